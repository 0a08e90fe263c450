/**
 * The PostgreSQL store's batch sink: the state writer's batch in ONE transaction, in a number of
 * round trips that does not grow with the batch. Each table gets one statement whose rows arrive
 * as one array per column and are spread back into rows by `unnest` (multi-row INSERT … SELECT,
 * upserts by ON CONFLICT). The SQL text is fixed, built once here, and a flush of 1,000 usage rows
 * is BEGIN, accounts, cards (delete + insert), ledger, usage, per-day aggregates, COMMIT: eight
 * round trips; one more with objects, two more with deleted accounts. Tables without rows in the
 * batch cost nothing. (Array parameters also keep the statement's text and parameter count the
 * same for every batch size, where multi-row VALUES would grow both.)
 */
import { CompiledQuery, type Kysely } from 'kysely';
import type {
  AccountRow,
  Batch,
  BatchSink,
  CardRow,
  DailyRow,
  LedgerRow,
  ObjectRow,
  UsageRow,
} from '../batch-sink.js';
import { objectConflictSet } from '../kysely-batch-sink.js';
import type { Database } from '../schema.js';

export type PgType = 'int4' | 'int8' | 'text';
export type Columns<R> = ReadonlyArray<readonly [keyof R & string, PgType]>;

const ACCOUNT: Columns<AccountRow> = [
  ['id', 'int4'],
  ['parent_id', 'int4'],
  ['name', 'text'],
  ['email', 'text'],
  ['name_key', 'text'],
  ['email_key', 'text'],
  ['alias', 'text'],
  ['billing_email', 'text'],
  ['key_hash', 'text'],
  ['partial_key', 'text'],
  ['level', 'int4'],
  ['rates', 'int8'],
  ['rate_limit', 'int8'],
  ['child_limit', 'int8'],
  ['hard_limit', 'int8'],
  ['soft_limit', 'int8'],
  ['status', 'int4'],
  ['is_root', 'int4'],
  ['allow_ips', 'text'],
  ['allow_models', 'text'],
  ['allow_endpoints', 'text'],
  ['credit_granted', 'int8'],
  ['credit_used', 'int8'],
  ['requests', 'int8'],
  ['soft_notice_month', 'text'],
  ['created_at', 'int8'],
  ['updated_at', 'int8'],
];

type CardInsert = CardRow & { account_id: number };
const CARD: Columns<CardInsert> = [
  ['account_id', 'int4'],
  ['amount', 'int8'],
  ['balance', 'int8'],
  ['granted_at', 'int8'],
  ['expires_at', 'int8'],
  ['reference', 'text'],
];

export const LEDGER: Columns<LedgerRow> = [
  ['account_id', 'int4'],
  ['kind', 'text'],
  ['amount', 'int8'],
  ['request_id', 'text'],
  ['note', 'text'],
  ['created_at', 'int8'],
];

export const USAGE: Columns<UsageRow> = [
  ['request_id', 'text'],
  ['account_id', 'int4'],
  ['model', 'text'],
  ['path', 'text'],
  ['day', 'text'],
  ['prompt_tokens', 'int8'],
  ['cached_tokens', 'int8'],
  ['completion_tokens', 'int8'],
  ['cost', 'int8'],
  ['status', 'int4'],
  ['outcome', 'text'],
  ['attempts', 'int4'],
  ['usage_source', 'text'],
  ['created_at', 'int8'],
  ['stream', 'int4'],
  ['reasoning_tokens', 'int8'],
  ['images', 'int4'],
  ['audio_ms', 'int8'],
  ['characters', 'int8'],
  ['rates', 'int8'],
  ['latency_ms', 'int4'],
  ['ttfb_ms', 'int4'],
  ['client_ip', 'text'],
  ['error_code', 'text'],
];

export const DAILY: Columns<DailyRow> = [
  ['account_id', 'int4'],
  ['day', 'text'],
  ['model', 'text'],
  ['requests', 'int8'],
  ['cost', 'int8'],
  ['prompt_tokens', 'int8'],
  ['completion_tokens', 'int8'],
];

export const OBJECT: Columns<ObjectRow> = [
  ['id', 'text'],
  ['kind', 'text'],
  ['account_id', 'int4'],
  ['key_id', 'int4'],
  ['key_group', 'text'],
  ['tag', 'text'],
  ['created_at', 'int8'],
  ['deleted_at', 'int8'],
  ['follow', 'text'],
  ['reserved', 'int8'],
  ['request_id', 'text'],
  ['model', 'text'],
  ['price_percent', 'int4'],
  ['follow_owner', 'text'],
];

/**
 * `insert into t (a, b) select a, b from unnest($1::int4[], $2::text[]) with ordinality … order by`
 * the array position: rows keep the batch's order, so identity ids (ledger, cards) follow it too.
 */
export function unnestInsert<R>(table: string, columns: Columns<R>, tail = ''): string {
  const names = columns.map(([name]) => name);
  const arrays = columns.map(([, type], i) => `$${i + 1}::${type}[]`);
  return `insert into ${table} (${names.join(', ')})
    select ${names.join(', ')} from unnest(${arrays.join(', ')}) with ordinality as r(${names.join(', ')}, ord)
    order by ord ${tail}`;
}

function updateAll<R>(columns: Columns<R>, key: string): string {
  return columns
    .filter(([name]) => name !== key)
    .map(([name]) => `${name} = excluded.${name}`)
    .join(', ');
}

/**
 * PostgreSQL text cannot hold NUL, and one such character (an Alias, a model name from a request
 * body) would fail every later flush of the batch it sits in: it is stored as U+FFFD instead.
 */
function pgText(value: unknown): unknown {
  return typeof value === 'string' && value.includes('\u0000') ? value.replaceAll('\u0000', '\uFFFD') : value;
}

/** One array per column (nulls kept), the parameters of an unnestInsert statement. */
export function columnArrays<R>(columns: Columns<R>, rows: readonly R[]): unknown[][] {
  return columns.map(([name, type]) =>
    type === 'text' ? rows.map((row) => pgText(row[name] ?? null)) : rows.map((row) => row[name] ?? null),
  );
}

/** Per-day totals added to what is stored (both sinks: rows only ever add). */
export const UPSERT_DAILY = unnestInsert(
  'usage_daily',
  DAILY,
  `on conflict (account_id, day, model) do update set
     requests = usage_daily.requests + excluded.requests, cost = usage_daily.cost + excluded.cost,
     prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens,
     completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens`,
);

/** Upstream objects, inserted or brought up to date (both sinks). */
export const UPSERT_OBJECTS = unnestInsert(
  'objects',
  OBJECT,
  `on conflict (id) do update set ${objectConflictSet(OBJECT.map(([name]) => name))}`,
);

export function createPostgresBatchSink(db: Kysely<Database>): BatchSink {
  const deleteCardsOf = 'delete from credit_cards where account_id = any($1::int4[])';
  const deleteAccounts = 'delete from accounts where id = any($1::int4[])';
  const upsertAccounts = unnestInsert(
    'accounts',
    ACCOUNT,
    `on conflict (id) do update set ${updateAll(ACCOUNT, 'id')}`,
  );
  const insertCards = unnestInsert('credit_cards', CARD);
  const insertLedger = unnestInsert('ledger', LEDGER);
  const insertUsage = unnestInsert('usage_records', USAGE, 'on conflict (request_id) do nothing');
  const upsertDaily = UPSERT_DAILY;
  const upsertObjects = UPSERT_OBJECTS;

  return {
    async write(b: Batch): Promise<void> {
      const cards: CardInsert[] = [];
      for (const a of b.accounts) {
        for (const c of b.cards.get(a.id) ?? [])
          cards.push({ ...c, reference: c.reference ?? null, account_id: a.id });
      }
      const ids = b.accounts.map((a) => a.id);
      await db.transaction().execute(async (trx) => {
        const run = async (text: string, params: unknown[]): Promise<void> => {
          await trx.executeQuery(CompiledQuery.raw(text, params));
        };
        // Deletes first, so a name freed by a deletion can be taken by an account in the same batch.
        if (b.deleted.length > 0) {
          await run(deleteCardsOf, [b.deleted]);
          await run(deleteAccounts, [b.deleted]);
        }
        if (ids.length > 0) {
          await run(upsertAccounts, columnArrays(ACCOUNT, b.accounts));
          // Every dirty account's card list is written whole: the old rows go, the current ones come.
          await run(deleteCardsOf, [ids]);
          if (cards.length > 0) await run(insertCards, columnArrays(CARD, cards));
        }
        if (b.ledger.length > 0) await run(insertLedger, columnArrays(LEDGER, b.ledger));
        if (b.usage.length > 0) await run(insertUsage, columnArrays(USAGE, b.usage));
        if (b.daily.length > 0) await run(upsertDaily, columnArrays(DAILY, b.daily));
        if (b.objects.length > 0) await run(upsertObjects, columnArrays(OBJECT, b.objects));
      });
    },
  };
}
