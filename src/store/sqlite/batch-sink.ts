/**
 * The embedded store's batch sink: the same transaction as ../kysely-batch-sink.ts, as a list of
 * statements prepared once (a flush of a thousand usage rows is a few dozen executions of one
 * compiled multi-row statement, instead of building and compiling SQL on every flush, which was a
 * quarter of the gateway's CPU), run on the writer thread (write-thread.ts) so that the
 * transaction never holds the event loop.
 */
import type { Batch, BatchSink } from '../batch-sink.js';
import { objectConflictSet } from '../kysely-batch-sink.js';
import type SqliteDatabase from 'better-sqlite3';
import { isPacked, type WriteOp } from './write-thread.js';
import { packLedger, packUsage, unpackRows } from './packed-rows.js';

const ACCOUNT_COLUMNS = [
  'id',
  'parent_id',
  'name',
  'email',
  'name_key',
  'email_key',
  'alias',
  'billing_email',
  'key_hash',
  'partial_key',
  'level',
  'rates',
  'rate_limit',
  'child_limit',
  'hard_limit',
  'soft_limit',
  'status',
  'is_root',
  'allow_ips',
  'allow_models',
  'allow_endpoints',
  'credit_granted',
  'credit_used',
  'requests',
  'soft_notice_month',
  'created_at',
  'updated_at',
] as const;

export const USAGE_COLUMNS = [
  'request_id',
  'account_id',
  'model',
  'path',
  'day',
  'prompt_tokens',
  'cached_tokens',
  'completion_tokens',
  'cost',
  'status',
  'outcome',
  'attempts',
  'usage_source',
  'created_at',
  'stream',
  'reasoning_tokens',
  'images',
  'audio_ms',
  'characters',
  'rates',
  'latency_ms',
  'ttfb_ms',
  'client_ip',
  'error_code',
] as const;

const OBJECT_COLUMNS = [
  'id',
  'kind',
  'account_id',
  'key_id',
  'key_group',
  'tag',
  'created_at',
  'deleted_at',
  'follow',
  'reserved',
  'request_id',
  'model',
  'price_percent',
  'follow_owner',
] as const;

function insertSql(table: string, columns: readonly string[]): string {
  return `insert into ${table} (${columns.join(', ')}) values (${columns.map((c) => `@${c}`).join(', ')})`;
}

const ROWS_PER_INSERT = 32;

function placeholders(columns: number, rows: number): string {
  const one = `(${Array.from({ length: columns }, () => '?').join(', ')})`;
  return Array.from({ length: rows }, () => one).join(', ');
}

// The per-request rows (a ledger row and a usage record each) go in with positional parameters
// (binding by name looks every column up on the row object through the V8 API) and
// ROWS_PER_INSERT rows per statement, which saves a third of the cost of one row per statement.
// They travel packed (packed-rows.ts), in USAGE_COLUMNS order (the packer's USAGE_SHAPE).
const ledgerSql = (n: number): string =>
  `insert into ledger (account_id, kind, amount, request_id, note, created_at) values ${placeholders(6, n)}`;
const usageSql = (n: number): string =>
  `insert into usage_records (${USAGE_COLUMNS.join(', ')}) values ${placeholders(USAGE_COLUMNS.length, n)}
   on conflict (request_id) do nothing`;

/**
 * The account columns that some index holds (the migrations' indexes on accounts; a test compares
 * them with the schema). A batch rewrites an account's row every time the account was used, and
 * an upsert that assigns an indexed column makes SQLite delete and insert that index's entry even
 * when its value is the same: with thousands of busy accounts, six index pages per account per
 * batch. So the row is first updated in place without them, matched on their current values, and
 * only a new account, or one whose name, e-mail, key or parent changed, takes the full upsert.
 */
export const INDEXED_ACCOUNT_COLUMNS = [
  'parent_id',
  'name',
  'email',
  'name_key',
  'email_key',
  'key_hash',
] as const;

const indexed: ReadonlySet<string> = new Set(INDEXED_ACCOUNT_COLUMNS);
const updateAccountStateSql =
  `update accounts set ${ACCOUNT_COLUMNS.filter((c) => c !== 'id' && !indexed.has(c))
    .map((c) => `${c} = @${c}`)
    .join(', ')} ` +
  `where id = @id and ${INDEXED_ACCOUNT_COLUMNS.map((c) => `${c} is @${c}`).join(' and ')}`;

/** The statements a batch is made of, by index (the writer thread prepares each once). */
const S = {
  upsertAccount: 0,
  deleteCards: 1,
  insertCard: 2,
  deleteAccount: 3,
  ledgerMany: 4,
  ledgerOne: 5,
  usageMany: 6,
  usageOne: 7,
  upsertDaily: 8,
  upsertObject: 9,
  updateAccountState: 10,
} as const;

export const SQLITE_BATCH_STATEMENTS: readonly string[] = [
  `${insertSql('accounts', ACCOUNT_COLUMNS)} on conflict (id) do update set ${ACCOUNT_COLUMNS.filter(
    (c) => c !== 'id',
  )
    .map((c) => `${c} = excluded.${c}`)
    .join(', ')}`,
  'delete from credit_cards where account_id = ?',
  'insert into credit_cards (account_id, amount, balance, granted_at, expires_at, reference) values (?, ?, ?, ?, ?, ?)',
  'delete from accounts where id = ?',
  ledgerSql(ROWS_PER_INSERT),
  ledgerSql(1),
  usageSql(ROWS_PER_INSERT),
  usageSql(1),
  `insert into usage_daily (account_id, day, model, requests, cost, prompt_tokens, completion_tokens)
   values (?, ?, ?, ?, ?, ?, ?)
   on conflict (account_id, day, model) do update set
     requests = requests + excluded.requests, cost = cost + excluded.cost,
     prompt_tokens = prompt_tokens + excluded.prompt_tokens,
     completion_tokens = completion_tokens + excluded.completion_tokens`,
  `${insertSql('objects', OBJECT_COLUMNS)} on conflict (id) do update set ${objectConflictSet(OBJECT_COLUMNS)}`,
  updateAccountStateSql,
];

/** One batch as the statements of its transaction, in order. */
export function batchOps(b: Batch): WriteOp[] {
  const ops: WriteOp[] = [];
  // Deletes first, so a name freed by a deletion can be taken by an account in the same batch.
  for (const id of b.deleted) {
    ops.push([S.deleteCards, [id]]);
    ops.push([S.deleteAccount, [id]]);
  }
  for (const row of b.accounts) {
    ops.push([S.updateAccountState, row, S.upsertAccount]);
    ops.push([S.deleteCards, [row.id]]);
    for (const c of b.cards.get(row.id) ?? []) {
      ops.push([
        S.insertCard,
        [row.id, c.amount, c.balance, c.granted_at, c.expires_at, c.reference ?? null],
      ]);
    }
  }
  if (b.ledger.length > 0) ops.push(packLedger(b.ledger, S.ledgerMany, S.ledgerOne, ROWS_PER_INSERT));
  if (b.usage.length > 0) ops.push(packUsage(b.usage, S.usageMany, S.usageOne, ROWS_PER_INSERT));
  for (const d of b.daily) {
    ops.push([
      S.upsertDaily,
      [d.account_id, d.day, d.model, d.requests, d.cost, d.prompt_tokens, d.completion_tokens],
    ]);
  }
  for (const o of b.objects) ops.push([S.upsertObject, o]);
  return ops;
}

/** Runs a batch's statements in one transaction: on the writer thread, or here. */
export interface BatchRunner {
  run(ops: readonly WriteOp[]): Promise<void>;
  close(): Promise<void>;
}

/**
 * The sink: each batch becomes its statements on the main thread and runs, in one transaction,
 * on the runner: the writer thread (write-thread.ts), off the event loop, or `inlineRunner` on the
 * main connection.
 */
export function createSqliteBatchSink(runner: BatchRunner): BatchSink {
  return {
    write: (batch) => (batchHasRows(batch) ? runner.run(batchOps(batch)) : Promise.resolve()),
  };
}

/** Runs the statements synchronously on `sqlite` (the main connection), prepared once each. */
export function inlineRunner(sqlite: SqliteDatabase.Database): BatchRunner {
  const prepared: SqliteDatabase.Statement[] = [];
  const statement = (i: number): SqliteDatabase.Statement =>
    (prepared[i] ??= sqlite.prepare(SQLITE_BATCH_STATEMENTS[i] ?? ''));
  const runOne = (i: number, params: unknown): void => {
    statement(i).run(params);
  };
  const runAll = sqlite.transaction((ops: readonly WriteOp[]) => {
    for (const op of ops) {
      if (isPacked(op)) unpackRows(op, runOne);
      else if (statement(op[0]).run(op[1]).changes === 0 && op[2] !== undefined) runOne(op[2], op[1]);
    }
  });
  return {
    run(ops) {
      try {
        runAll(ops);
        return Promise.resolve();
      } catch (err: unknown) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    },
    close: () => Promise.resolve(),
  };
}

function batchHasRows(b: Batch): boolean {
  return (
    b.deleted.length +
      b.accounts.length +
      b.ledger.length +
      b.usage.length +
      b.daily.length +
      b.objects.length >
    0
  );
}
