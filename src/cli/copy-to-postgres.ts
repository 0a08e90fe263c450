/**
 * The copy of `npm run migrate-to-postgres`: every table of the SQLite source into the PostgreSQL
 * target (already opened and migrated by `openStore`), in ONE transaction on the target. In it:
 * lock the gateway's tables, refuse unless every one is empty, copy in batches (a page of the
 * source becomes one INSERT … SELECT FROM unnest(arrays)), move the identity sequences past the
 * copied ids, verify, and only then commit. Any refusal, error or difference rolls back: a failed
 * run leaves the target without a row, ready for another run.
 */
import { CompiledQuery, sql, type Transaction } from 'kysely';
import type { Database } from '../store/schema.js';
import type { Store } from '../store/store.js';
import { RefusedError, type SourcePage, type SourceTable, type SqliteSource } from './sqlite-source.js';
import { verifyCopy, type Verification } from './verify-copy.js';

/** The copy verified with differences; the transaction was rolled back. */
export class VerificationError extends Error {
  constructor(readonly verification: Verification) {
    super(`the copy differs from the SQLite store in ${verification.differences.length} respects`);
    this.name = 'VerificationError';
  }
}

export interface CopiedTable {
  readonly table: string;
  readonly rows: number;
  readonly ms: number;
}

export interface CopyResult {
  readonly tables: readonly CopiedTable[];
  /** Identity columns and the value their sequence hands out next. */
  readonly sequences: ReadonlyArray<{ readonly table: string; readonly next: number }>;
  /** Text values holding NUL, stored as U+FFFD (PostgreSQL text cannot hold NUL). */
  readonly nulReplaced: number;
  readonly verification: Verification;
}

export interface CopyOptions {
  /** Rows per INSERT (and per page read from SQLite). */
  readonly batchRows?: number;
  /** The instant that decides which cards are live in the verification. */
  readonly now?: number;
  /** A table is done. */
  readonly onTable?: (t: CopiedTable) => void;
  /** Progress inside a long table, at most every few seconds. */
  readonly onProgress?: (table: string, done: number, total: number) => void;
}

const DEFAULT_BATCH_ROWS = 5_000;
const PROGRESS_EVERY_MS = 5_000;
/** Migration bookkeeping: the target has its own, from its migrations. */
const isBookkeeping = (name: string): boolean => name.startsWith('kysely_');

type PgType = 'int4' | 'int8' | 'text';

interface TargetColumn {
  readonly type: PgType;
  readonly identity: boolean;
}

/** The target's columns, per table, in the schema its migrations created (`current_schema()`). */
async function targetColumns(trx: Transaction<Database>): Promise<Map<string, Map<string, TargetColumn>>> {
  const r = await sql<{ table_name: string; column_name: string; data_type: string; is_identity: string }>`
    select table_name, column_name, data_type, is_identity from information_schema.columns
    where table_schema = current_schema() order by table_name, ordinal_position`.execute(trx);
  const types: Record<string, PgType> = { integer: 'int4', bigint: 'int8', text: 'text' };
  const out = new Map<string, Map<string, TargetColumn>>();
  for (const c of r.rows) {
    if (isBookkeeping(c.table_name)) continue;
    const type = types[c.data_type];
    if (type === undefined) {
      throw new RefusedError(
        `PostgreSQL column ${c.table_name}.${c.column_name} has type ${c.data_type}, which this command does not copy`,
      );
    }
    const table = out.get(c.table_name) ?? new Map<string, TargetColumn>();
    table.set(c.column_name, { type, identity: c.is_identity === 'YES' });
    out.set(c.table_name, table);
  }
  return out;
}

function ident(name: string): string {
  // Names come from the schemas; the gateway's are plain lower-case identifiers.
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new RefusedError(`unexpected table or column name "${name}"`);
  return `"${name}"`;
}

/** Same columns on both sides, or the two schemas are not the same version after all. */
function matchColumns(t: SourceTable, target: Map<string, TargetColumn> | undefined): PgType[] {
  if (target === undefined)
    throw new RefusedError(`table ${t.name} of the SQLite store does not exist in PostgreSQL`);
  const extra = [...target.keys()].filter((c) => !t.columns.includes(c));
  const missing = t.columns.filter((c) => !target.has(c));
  if (extra.length > 0 || missing.length > 0) {
    throw new RefusedError(
      `table ${t.name} has different columns in SQLite and PostgreSQL` +
        ` (only in SQLite: ${missing.join(', ') || 'none'}; only in PostgreSQL: ${extra.join(', ') || 'none'})`,
    );
  }
  return t.columns.map((c) => target.get(c)!.type);
}

/**
 * Refuses unless every table of the gateway in the target is empty. A table with rows is counted
 * up to 1,000 only: the message needs to say which tables, not to scan them.
 */
async function requireEmpty(
  trx: Transaction<Database>,
  tables: readonly string[],
  where: string,
): Promise<void> {
  const full: string[] = [];
  for (const table of tables) {
    const capped = sql<{
      n: number;
    }>`select count(*) as n from (select 1 from ${sql.table(table)} limit 1000) s`;
    const n = Number((await capped.execute(trx)).rows[0]?.n ?? 0);
    if (n > 0) full.push(`${table} ${n >= 1000 ? '1,000+' : n} rows`);
  }
  if (full.length > 0) {
    throw new RefusedError(
      `the target ${where} is not empty (${full.join(', ')}): this command only copies into a ` +
        'database without proxyxai data (has a gateway been started on it?). Use a new database or ' +
        'schema, or empty this one yourself if its data is not needed',
    );
  }
}

/**
 * Copies `source` into `target` and verifies the copy, all in one transaction on the target.
 * Throws RefusedError (target not empty, schemas differ), VerificationError (rolled back), or
 * whatever the database said (rolled back).
 */
export async function copyIntoPostgres(
  source: SqliteSource,
  target: Store,
  opts: CopyOptions = {},
): Promise<CopyResult> {
  const batchRows = opts.batchRows ?? DEFAULT_BATCH_ROWS;
  const now = opts.now ?? Date.now();
  return target.db.transaction().execute(async (trx) => {
    // This connection belongs to a person watching the command: one statement may run long on a
    // big table (the gateway's bound is 30 s), and the transaction idles while pages are read from
    // SQLite. Ctrl-C ends the process, which closes the connection and rolls back.
    await sql`set local statement_timeout = 0`.execute(trx);
    await sql`set local idle_in_transaction_session_timeout = 0`.execute(trx);
    // But never wait long for the tables: whoever holds them is using the database.
    await sql`set local lock_timeout = '10s'`.execute(trx);

    const columns = await targetColumns(trx);
    const tables = [...columns.keys()];
    // Every table checked before the first row moves.
    const plan = source.tables.map((t) => ({ t, types: matchColumns(t, columns.get(t.name)) }));
    // Nobody may read or write the gateway's tables until this commits: a gateway starting now
    // waits (and then sees the whole copy) or gives up, rather than loading a half-copied store,
    // and a second run of this command waits and then finds the target not empty.
    const lock = sql`lock table ${sql.join(tables.map((t) => sql.table(t)))} in access exclusive mode`;
    try {
      await lock.execute(trx);
    } catch (err: unknown) {
      if ((err as { code?: unknown }).code === '55P03') {
        throw new RefusedError(
          `the target's tables are in use by another session (a gateway or another copy running on ${target.location}?)`,
          { cause: err },
        );
      }
      throw err;
    }
    await requireEmpty(trx, tables, target.location);

    const copied: CopiedTable[] = [];
    let nulReplaced = 0;
    for (const { t, types } of plan) {
      const started = Date.now();
      const r = await copyTable(trx, source, t, types, batchRows, opts);
      nulReplaced += r.nulReplaced;
      const done = { table: t.name, rows: r.rows, ms: Date.now() - started };
      copied.push(done);
      opts.onTable?.(done);
    }

    // Identity columns continue after the copied ids, and after ids SQLite's AUTOINCREMENT handed
    // out to rows since deleted (it never reuses them, so neither does the copy).
    const sequences: Array<{ table: string; next: number }> = [];
    for (const [table, cols] of columns) {
      for (const [column, c] of cols) {
        if (!c.identity) continue;
        const max = sql<Max>`select max(${sql.ref(column)}) as max from ${sql.table(table)}`;
        const copiedMax = Number((await max.execute(trx)).rows[0]?.max ?? 0);
        const next = Math.max(copiedMax, source.sequences.get(table) ?? 0) + 1;
        // pg_get_serial_sequence takes the table as SQL would name it (quoted, found by search_path).
        const name = `"${table}"`;
        await sql`select setval(pg_get_serial_sequence(${name}, ${column}), ${next}, false)`.execute(trx);
        sequences.push({ table, next });
      }
    }

    const verification = await verifyCopy(
      source.db,
      trx,
      copied.map((c) => c.table),
      now,
    );
    if (verification.differences.length > 0) throw new VerificationError(verification);
    return { tables: copied, sequences, nulReplaced, verification };
  });
}

type Max = { max: number | null };

/**
 * One table, page by page: each page of the source (keyset on rowid) is one INSERT of column
 * arrays spread into rows by `unnest`, whose text and parameter count do not grow with the page.
 */
async function copyTable(
  trx: Transaction<Database>,
  source: SqliteSource,
  t: SourceTable,
  types: readonly PgType[],
  batchRows: number,
  opts: CopyOptions,
): Promise<{ rows: number; nulReplaced: number }> {
  const text = `insert into ${ident(t.name)} (${t.columns.map(ident).join(', ')})
    select * from unnest(${types.map((type, i) => `$${i + 1}::${type}[]`).join(', ')})`;
  const total = source.count(t.name);
  let reported = Date.now();
  let rows = 0;
  let nulReplaced = 0;
  let page = source.page(t, Number.MIN_SAFE_INTEGER, batchRows);
  while (page.rows > 0) {
    for (let c = 0; c < types.length; c++) {
      if (types[c] === 'text') nulReplaced += replaceNul(page.columns[c]!);
    }
    const insert = trx.executeQuery(CompiledQuery.raw(text, page.columns));
    // Handled at the `await` below; this keeps a quick failure from counting as unhandled meanwhile.
    insert.catch(() => undefined);
    // Read the next page while PostgreSQL inserts this one: yield once so that the INSERT (a
    // chain of promise callbacks down to the socket) is sent before the synchronous read.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const next: SourcePage =
      page.rows < batchRows
        ? { columns: [], rows: 0, lastRowid: page.lastRowid }
        : source.page(t, page.lastRowid, batchRows);
    await insert;
    rows += page.rows;
    if (opts.onProgress !== undefined && Date.now() - reported >= PROGRESS_EVERY_MS) {
      reported = Date.now();
      opts.onProgress(t.name, rows, total);
    }
    page = next;
  }
  return { rows, nulReplaced };
}

/**
 * PostgreSQL text cannot hold NUL: such a character is stored as U+FFFD, as the gateway's own
 * PostgreSQL writer does (store/postgres/batch-sink.ts). Returns how many values changed.
 */
function replaceNul(values: unknown[]): number {
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v === 'string' && v.includes('\u0000')) {
      values[i] = v.replaceAll('\u0000', '\uFFFD');
      n++;
    }
  }
  return n;
}
