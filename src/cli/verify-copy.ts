/**
 * The check of `npm run migrate-to-postgres`: the same questions asked of the SQLite source and of
 * the PostgreSQL target (inside the copy's transaction, before it commits), every answer compared.
 * Row counts of every copied table; per account its balance (Σ live card balances), credit used,
 * credit granted, requests, Σ ledger, key fingerprint and the keys it is looked up by (folded Name
 * and E-mail); per upstream key its fingerprint and ciphertext; and the usage totals. Accounts and
 * keys are compared in id ranges, so memory stays bounded whatever the number of accounts. The
 * ledger has no per-account index (migration 0010): its sums are taken for a band of up to
 * LEDGER_BAND accounts per scan of the table, on each side.
 */
import { sql, type Kysely } from 'kysely';
import type { Database } from '../store/schema.js';

export interface TableCount {
  readonly table: string;
  readonly source: number;
  readonly target: number;
}

export interface Verification {
  readonly counts: readonly TableCount[];
  /** Accounts compared field by field. */
  readonly accounts: number;
  /** Upstream keys compared field by field. */
  readonly upstreamKeys: number;
  /** What differs, one line each; empty when the copy is faithful. */
  readonly differences: readonly string[];
}

/** Accounts (and keys) compared per round trip. */
const RANGE = 2_000;
/**
 * Accounts whose ledger sums one scan of the ledger collects (a map of that many numbers per side):
 * a store of a million accounts is scanned five times on each side, instead of once per range.
 */
const LEDGER_BAND = 200_000;
/** Lines of differences kept; the rest is counted. */
const MAX_LINES = 50;

/** What the copy must preserve of one account. */
interface AccountFacts {
  key_hash: string;
  credit_granted: number;
  credit_used: number;
  requests: number;
  /** Σ balance of the cards still live at the verification's `now`. */
  balance: number;
  /** Σ amount of its ledger rows. */
  ledger: number;
  /** The lookup keys (foldKey of Name and E-mail): an account the gateway cannot find is lost. */
  name_key: string;
  email_key: string;
}

const ACCOUNT_FIELDS: ReadonlyArray<keyof AccountFacts> = [
  'balance',
  'credit_used',
  'credit_granted',
  'requests',
  'ledger',
  'key_hash',
  'name_key',
  'email_key',
];

async function accountFacts(
  db: Kysely<Database>,
  from: number,
  to: number,
  now: number,
  ledgers: ReadonlyMap<number, number>,
): Promise<Map<number, AccountFacts>> {
  const accounts = await db
    .selectFrom('accounts')
    .select(['id', 'key_hash', 'credit_granted', 'credit_used', 'requests', 'name_key', 'email_key'])
    .where('id', '>=', from)
    .where('id', '<=', to)
    .execute();
  const cards = await db
    .selectFrom('credit_cards')
    .select((eb) => ['account_id', eb.fn.sum<number>('balance').as('total')])
    .where('account_id', '>=', from)
    .where('account_id', '<=', to)
    // Live as the gateway counts it: strictly before the expiry instant (accounts/cards.ts).
    .where('expires_at', '>', now)
    .groupBy('account_id')
    .execute();
  const balances = new Map(cards.map((c) => [c.account_id, Number(c.total)]));
  const out = new Map<number, AccountFacts>();
  for (const a of accounts) {
    out.set(a.id, {
      key_hash: a.key_hash,
      // int8 comes back as a number from both drivers; Number() also covers a text-typed value.
      credit_granted: Number(a.credit_granted),
      credit_used: Number(a.credit_used),
      requests: Number(a.requests),
      balance: balances.get(a.id) ?? 0,
      ledger: ledgers.get(a.id) ?? 0,
      name_key: asCopied(a.name_key),
      email_key: asCopied(a.email_key),
    });
  }
  return out;
}

/**
 * Text as the copy stores it in PostgreSQL, whose text cannot hold NUL (copy-to-postgres.ts
 * stores U+FFFD instead): an E-mail may hold one, and so its key. Applied on both sides.
 */
function asCopied(text: string): string {
  return text.replaceAll('\u0000', '\uFFFD');
}

interface KeyFacts {
  key_hash: string;
  ciphertext: string;
  status: string;
}

async function keyFacts(db: Kysely<Database>, from: number, to: number): Promise<Map<number, KeyFacts>> {
  const rows = await db
    .selectFrom('upstream_keys')
    .select(['id', 'key_hash', 'ciphertext', 'status'])
    .where('id', '>=', from)
    .where('id', '<=', to)
    .execute();
  return new Map(
    rows.map((r) => [r.id, { key_hash: r.key_hash, ciphertext: r.ciphertext, status: r.status }]),
  );
}

/** The id of the account `band` places from `from` (itself included), or the last id there is. */
async function bandEnd(db: Kysely<Database>, from: number, band: number): Promise<number> {
  const row = await db
    .selectFrom('accounts')
    .select('id')
    .where('id', '>=', from)
    .orderBy('id')
    .limit(1)
    .offset(band - 1)
    .executeTakeFirst();
  if (row !== undefined) return row.id;
  const last = await db
    .selectFrom('accounts')
    .select((eb) => eb.fn.max('id').as('id'))
    .executeTakeFirstOrThrow();
  return last.id ?? from;
}

/** Σ ledger amount per account of ids from..to: one scan of the ledger. */
async function ledgerSums(db: Kysely<Database>, from: number, to: number): Promise<Map<number, number>> {
  const rows = await db
    .selectFrom('ledger')
    .select((eb) => ['account_id', eb.fn.sum<number>('amount').as('total')])
    .where('account_id', '>=', from)
    .where('account_id', '<=', to)
    .groupBy('account_id')
    .execute();
  return new Map(rows.map((l) => [l.account_id, Number(l.total)]));
}

interface LedgerBand {
  readonly to: number;
  readonly source: ReadonlyMap<number, number>;
  readonly target: ReadonlyMap<number, number>;
}

/** Usage and money totals over whole tables (one scan each), named for the report. */
async function totals(db: Kysely<Database>): Promise<Record<string, number>> {
  const usage = await db
    .selectFrom('usage_records')
    .select((eb) => [
      eb.fn.sum<number>('cost').as('cost'),
      eb.fn.sum<number>('prompt_tokens').as('prompt'),
      eb.fn.sum<number>('completion_tokens').as('completion'),
    ])
    .executeTakeFirstOrThrow();
  const daily = await db
    .selectFrom('usage_daily')
    .select((eb) => [eb.fn.sum<number>('cost').as('cost'), eb.fn.sum<number>('requests').as('requests')])
    .executeTakeFirstOrThrow();
  const ledger = await db
    .selectFrom('ledger')
    .select((eb) => eb.fn.sum<number>('amount').as('amount'))
    .executeTakeFirstOrThrow();
  const objects = await db
    .selectFrom('objects')
    .select((eb) => eb.fn.sum<number>('reserved').as('reserved'))
    .executeTakeFirstOrThrow();
  // Σ over no rows is NULL in both dialects.
  const n = (v: number | null): number => (v === null ? 0 : Number(v));
  return {
    'usage_records Σ cost': n(usage.cost),
    'usage_records Σ prompt_tokens': n(usage.prompt),
    'usage_records Σ completion_tokens': n(usage.completion),
    'usage_daily Σ cost': n(daily.cost),
    'usage_daily Σ requests': n(daily.requests),
    'ledger Σ amount': n(ledger.amount),
    'objects Σ reserved': n(objects.reserved),
  };
}

async function count(db: Kysely<Database>, table: string): Promise<number> {
  const r = await sql<{ n: number }>`select count(*) as n from ${sql.table(table)}`.execute(db);
  return Number(r.rows[0]?.n ?? 0);
}

/** Ids of `table` in ascending ranges of at most RANGE ids, as the source has them. */
async function* idRanges(
  db: Kysely<Database>,
  table: 'accounts' | 'upstream_keys',
): AsyncGenerator<{ from: number; to: number; ids: number[] }> {
  let last = Number.MIN_SAFE_INTEGER;
  for (;;) {
    const rows = await db
      .selectFrom(table)
      .select('id')
      .where('id', '>', last)
      .orderBy('id')
      .limit(RANGE)
      .execute();
    if (rows.length === 0) return;
    const ids = rows.map((r) => r.id);
    last = ids.at(-1)!;
    yield { from: ids[0]!, to: last, ids };
  }
}

/**
 * Compares source and target. `now` decides which cards are live, the same instant on both sides.
 * `tables` are the copied tables (every one is counted on both sides); `ledgerBand` is how many
 * accounts' ledger sums one scan collects (smaller in tests, to cross band ends).
 */
export async function verifyCopy(
  source: Kysely<Database>,
  target: Kysely<Database>,
  tables: readonly string[],
  now: number,
  ledgerBand = LEDGER_BAND,
): Promise<Verification> {
  const differences: string[] = [];
  let hidden = 0;
  const differ = (line: string): void => {
    if (differences.length < MAX_LINES) differences.push(line);
    else hidden++;
  };

  const counts: TableCount[] = [];
  for (const table of tables) {
    const c = { table, source: await count(source, table), target: await count(target, table) };
    counts.push(c);
    if (c.source !== c.target) differ(`${table}: ${c.source} rows in SQLite, ${c.target} in PostgreSQL`);
  }

  let accounts = 0;
  let band: LedgerBand | undefined;
  for await (const { from, to, ids } of idRanges(source, 'accounts')) {
    // A range that ends past the band starts a new one (from its own first id).
    if (band === undefined || to > band.to) {
      const end = Math.max(await bandEnd(source, from, ledgerBand), to);
      band = {
        to: end,
        source: await ledgerSums(source, from, end),
        target: await ledgerSums(target, from, end),
      };
    }
    const [want, got] = [
      await accountFacts(source, from, to, now, band.source),
      await accountFacts(target, from, to, now, band.target),
    ];
    for (const id of ids) {
      const w = want.get(id)!;
      const g = got.get(id);
      accounts++;
      if (g === undefined) {
        differ(`account ${id}: missing in PostgreSQL`);
        continue;
      }
      for (const field of ACCOUNT_FIELDS) {
        // Fingerprints are compared, never printed.
        if (w[field] !== g[field]) {
          differ(
            field === 'key_hash'
              ? `account ${id}: key fingerprint differs`
              : `account ${id}: ${field} ${w[field]} in SQLite, ${g[field]} in PostgreSQL`,
          );
        }
      }
    }
    for (const id of got.keys()) if (!want.has(id)) differ(`account ${id}: in PostgreSQL only`);
  }

  let upstreamKeys = 0;
  for await (const { from, to, ids } of idRanges(source, 'upstream_keys')) {
    const [want, got] = [await keyFacts(source, from, to), await keyFacts(target, from, to)];
    for (const id of ids) {
      const w = want.get(id)!;
      const g = got.get(id);
      upstreamKeys++;
      if (g === undefined) differ(`upstream key ${id}: missing in PostgreSQL`);
      else if (w.key_hash !== g.key_hash || w.ciphertext !== g.ciphertext)
        differ(`upstream key ${id}: fingerprint or ciphertext differs`);
      else if (w.status !== g.status)
        differ(`upstream key ${id}: status ${w.status} in SQLite, ${g.status} in PostgreSQL`);
    }
    for (const id of got.keys()) if (!want.has(id)) differ(`upstream key ${id}: in PostgreSQL only`);
  }

  const [want, got] = [await totals(source), await totals(target)];
  for (const [name, value] of Object.entries(want)) {
    if (got[name] !== value) differ(`${name}: ${value} in SQLite, ${got[name]} in PostgreSQL`);
  }

  if (hidden > 0) differences.push(`… and ${hidden} more differences`);
  return { counts, accounts, upstreamKeys, differences };
}
