// The lookup keys of accounts (name_key, email_key: `foldKey` of the Name and the E-mail), on every
// store backend present: migration 0009 computes them for the accounts an older store holds, in
// pages, and indexes them; every sink writes them with each account row, and a rename rewrites
// them. The keys are what a lookup "in any case or normal form" finds an account by in the store.
import { sql, type Kysely } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { foldKey } from '../../src/accounts/account-rules.js';
import { newRootAccount } from '../../src/accounts/load-accounts.js';
import type { Batch } from '../../src/store/batch-sink.js';
import type { AccountsTable, Database } from '../../src/store/schema.js';
import { accountRow } from '../../src/store/state-writer.js';
import { sinksOf, storeBackends, type OpenedStore } from '../support/stores.js';

/** Spellings in several scripts, with the key each must get (written out: foldKey is under test too). */
const SPELLINGS = [
  { name: 'José', email: 'MiXeD@Example.COM', nameKey: 'josé', emailKey: 'mixed@example.com' },
  // Σ, σ and ς are one letter: every spelling keys to the lower-case form with a final ς.
  { name: 'ΟΔΟΣ', email: 'ΟΔΟΣ@Παράδειγμα.ΕΛ', nameKey: 'οδος', emailKey: 'οδος@παράδειγμα.ελ' },
  { name: '测试账号', email: '测试@例子.测试', nameKey: '测试账号', emailKey: '测试@例子.测试' },
  // Full-width letters (NFKC) and the capital sharp s.
  { name: 'ＡＢＣ', email: 'ẞtrasse@Example.com', nameKey: 'abc', emailKey: 'sstrasse@example.com' },
  // Decomposed (NFD) é: the key is the composed one.
  { name: 'Jose\u0301', email: 'jose\u0301@example.com', nameKey: 'josé', emailKey: 'josé@example.com' },
] as const;

/** Accounts beyond the special ones: more than two pages of the backfill (5,000 per page). */
const FILLER = 11_001;

const PERIOD = { day: '2026-01-01', month: '2026-01' };

function emptyBatch(): Batch {
  return { accounts: [], cards: new Map(), deleted: [], ledger: [], usage: [], daily: [], objects: [] };
}

/** An accounts row as migrations 0001–0008 define it (no lookup keys yet). */
type Account0008 = Omit<AccountsTable, 'id' | 'leased' | 'name_key' | 'email_key'> & { id: number };

function row0008(id: number, name: string, email: string): Account0008 {
  return {
    id,
    parent_id: null,
    name,
    email,
    alias: name,
    billing_email: null,
    key_hash: `hash-${id}`,
    partial_key: 'sk-…',
    level: 1,
    rates: 1_000_000,
    rate_limit: 60,
    child_limit: 0,
    hard_limit: 0,
    soft_limit: 0,
    status: 1,
    is_root: 0,
    allow_ips: null,
    allow_models: null,
    allow_endpoints: null,
    credit_granted: 0,
    credit_used: 0,
    requests: 0,
    soft_notice_month: null,
    created_at: 1,
    updated_at: 1,
  };
}

async function keysOf(db: Kysely<Database>, ids: readonly number[]) {
  return db
    .selectFrom('accounts')
    .select(['id', 'name_key', 'email_key'])
    .where('id', 'in', ids)
    .orderBy('id')
    .execute();
}

async function accountIndexes(db: Kysely<Database>, dialect: 'sqlite' | 'postgres'): Promise<string[]> {
  const r =
    dialect === 'sqlite'
      ? await sql<{ name: string }>`select name from sqlite_master
          where type = 'index' and tbl_name = 'accounts' order by name`.execute(db)
      : await sql<{ name: string }>`select indexname as name from pg_indexes
          where schemaname = current_schema() and tablename = 'accounts' order by indexname`.execute(db);
  return r.rows.map((x) => x.name);
}

describe.each(storeBackends())('$name store', (backend) => {
  let opened: OpenedStore | undefined;
  afterEach(async () => {
    await opened?.dispose();
    opened = undefined;
  });

  it('migration 0009 gives the accounts of an older store their folded keys, in pages, and indexes them', async () => {
    const older = await backend.openAt('0008_request_log');
    const db = older.db.withTables<{ accounts: Account0008 }>();
    const special = SPELLINGS.map((s, i) => row0008(1 + i, s.name, s.email));
    // Ids with gaps, and mixed case, so that a page boundary or a key off by one shows.
    const filler = Array.from({ length: FILLER }, (_, i) =>
      row0008(100 + 3 * i, `Filler${i}`, `Filler.${i}@Example.ORG`),
    );
    const rows = [...special, ...filler];
    for (let i = 0; i < rows.length; i += 500) {
      await db
        .insertInto('accounts')
        .values(rows.slice(i, i + 500))
        .execute();
    }
    opened = await older.open();
    const store = opened.store;

    const got = await keysOf(
      store.db,
      special.map((r) => r.id),
    );
    expect(got).toEqual(SPELLINGS.map((s, i) => ({ id: 1 + i, name_key: s.nameKey, email_key: s.emailKey })));
    for (const s of SPELLINGS) {
      expect(foldKey(s.name)).toBe(s.nameKey);
      expect(foldKey(s.email)).toBe(s.emailKey);
    }
    // Every row, on every page, has exactly foldKey of its name and e-mail.
    const all = await store.db
      .selectFrom('accounts')
      .select(['id', 'name', 'email', 'name_key', 'email_key'])
      .orderBy('id')
      .execute();
    expect(all).toHaveLength(rows.length);
    const wrong = all.filter((a) => a.name_key !== foldKey(a.name) || a.email_key !== foldKey(a.email));
    expect(wrong).toEqual([]);
    expect(all.at(-1)).toMatchObject({
      id: 100 + 3 * (FILLER - 1),
      name_key: `filler${FILLER - 1}`,
      email_key: `filler.${FILLER - 1}@example.org`,
    });

    // Found by any spelling through the keys, and the keys are indexed (plain indexes).
    const byName = await store.db
      .selectFrom('accounts')
      .select('id')
      .where('name_key', '=', foldKey('JOSÉ'))
      .orderBy('id')
      .execute();
    expect(byName).toEqual([{ id: 1 }, { id: 5 }]);
    const byEmail = await store.db
      .selectFrom('accounts')
      .select('id')
      .where('email_key', '=', foldKey('οδοσ@ΠΑΡΆΔΕΙΓΜΑ.ελ'))
      .execute();
    expect(byEmail).toEqual([{ id: 2 }]);
    const bySigma = await store.db
      .selectFrom('accounts')
      .select('id')
      .where('name_key', '=', foldKey('οδοσ'))
      .execute();
    expect(bySigma).toEqual([{ id: 2 }]);
    expect(await accountIndexes(store.db, store.dialect)).toEqual(
      expect.arrayContaining(['accounts_name_key', 'accounts_email_key']),
    );

    // Opening again runs nothing more.
    const again = await opened.reopen();
    const migrated = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(
      again.db,
    );
    expect(migrated.rows.at(-1)).toEqual({ name: '0010_ledger_unindexed_by_account' });
  }, 60_000);

  it('migrates a store without accounts', async () => {
    const older = await backend.openAt('0008_request_log');
    opened = await older.open();
    expect(await opened.store.db.selectFrom('accounts').selectAll().execute()).toEqual([]);
    expect(await accountIndexes(opened.store.db, opened.store.dialect)).toEqual(
      expect.arrayContaining(['accounts_name_key', 'accounts_email_key']),
    );
  });

  describe.each(sinksOf())('%s', (_name, makeSink) => {
    it('writes the keys with every account row, and a rename rewrites them', async () => {
      opened = await backend.open();
      const { store } = opened;
      const sink = makeSink(store);
      const accounts = SPELLINGS.map((s, i) => {
        const a = newRootAccount(10 + i, s.email, `h${i}`, 'p', 0, PERIOD);
        a.name = s.name;
        return a;
      });
      const batch = emptyBatch();
      batch.accounts.push(...accounts.map(accountRow));
      await sink.write(batch);
      expect(
        await keysOf(
          store.db,
          accounts.map((a) => a.id),
        ),
      ).toEqual(SPELLINGS.map((s, i) => ({ id: 10 + i, name_key: s.nameKey, email_key: s.emailKey })));

      // Two accounts swap their names, one flush after the other: the keys follow, and one key on
      // two rows in between is no error (the indexes are not UNIQUE).
      const [jose, odos] = accounts as [(typeof accounts)[0], (typeof accounts)[0]];
      jose.name = 'ΟΔΟΣ';
      jose.email = 'Ὀδυσσεύς@EXAMPLE.com';
      odos.name = 'José';
      const renamed = emptyBatch();
      renamed.accounts.push(accountRow(jose));
      await sink.write(renamed);
      const swapped = emptyBatch();
      swapped.accounts.push(accountRow(odos));
      await sink.write(swapped);
      expect(await keysOf(store.db, [jose.id, odos.id])).toEqual([
        { id: jose.id, name_key: 'οδος', email_key: 'ὀδυσσεύς@example.com' },
        { id: odos.id, name_key: 'josé', email_key: SPELLINGS[1].emailKey },
      ]);
    });
  });
});
