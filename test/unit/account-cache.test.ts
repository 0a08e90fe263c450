// Accounts loaded on first use (issue 15, point 4), on every store backend: the registry is a
// bounded cache over the store, one object per account whatever happens (eviction, a reference
// kept across it, a write completing during a read), unknown keys cost one query each, and names,
// e-mails and the tree are answered from the store for accounts that are not in memory.
import { sql } from 'kysely';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Account } from '../../src/accounts/account.js';
import { AccountLoader } from '../../src/accounts/account-loader.js';
import { AccountRegistry } from '../../src/accounts/account-registry.js';
import { loadRoot, newRootAccount } from '../../src/accounts/load-accounts.js';
import { Calendar } from '../../src/billing/calendar.js';
import { StateWriter } from '../../src/store/state-writer.js';
import type { Store } from '../../src/store/store.js';
import { storeBackends, type OpenedStore } from '../support/stores.js';

const silent = pino({ level: 'silent' });
const calendar = new Calendar('UTC');
const period = (): ReturnType<Calendar['periodOf']> => calendar.periodOf(Date.now());

function account(id: number, parentId: number | null, name: string, email = `${id}@example.com`): Account {
  const a = newRootAccount(id, email, `hash-${id}`, 'partial', Date.now(), period());
  return { ...a, isRoot: parentId === null, parentId, name, alias: name };
}

/** A store holding root (1) → reseller (2) → 3..12, and 13 'José', 14 'ΟΔΟΣ', 15 '测试账号' under root. */
async function seed(store: Store): Promise<void> {
  const writer = new StateWriter(store.batchSink, silent, { flushIntervalMs: 60_000, statsInterval: 1_000 });
  const all = [
    account(1, null, 'root'),
    account(2, 1, 'reseller'),
    ...Array.from({ length: 10 }, (_, i) => account(3 + i, 2, `leaf-${3 + i}`)),
    account(13, 1, 'José', 'José@Example.com'),
    account(14, 1, 'ΟΔΟΣ'),
    account(15, 1, '测试账号', 'ＣＥＳＨＩ@example.com'),
  ];
  for (const a of all) writer.markDirty(a);
  await writer.flush();
}

describe.each(storeBackends())('$name store', (backend) => {
  let opened: OpenedStore;
  let writer: StateWriter;
  let registry: AccountRegistry;
  let loader: AccountLoader;
  let held: Set<number>;

  /** `pinning: false` evicts even accounts with unwritten state: the safety net alone must hold. */
  function build(capacity = 1000, pinning = true): void {
    held = new Set();
    writer = new StateWriter(opened.store.batchSink, silent, {
      flushIntervalMs: 60_000,
      statsInterval: 1_000,
      // As the app wires it: a write lets the cache evict what it had to keep.
      afterWrite: () => registry.trim(),
    });
    registry = new AccountRegistry({
      capacity,
      held: (a) => pinning && (held.has(a.id) || writer.holds(a.id)),
    });
    loader = new AccountLoader({ db: opened.store.db, registry, writer, period });
  }

  beforeEach(async () => {
    opened = await backend.open();
    await seed(opened.store);
    build();
    await loadRoot(opened.store.db, registry, period());
  });
  afterEach(async () => {
    await opened.dispose();
  });

  it('starts with the root alone, and new ids follow the highest stored one', () => {
    expect(registry.size).toBe(1);
    expect(registry.root()?.id).toBe(1);
    expect(registry.root()?.childCount).toBe(4);
    expect(registry.allocateId()).toBe(16);
  });

  it('loads an account on first use by key, then answers from memory with the same object', async () => {
    const a = await loader.byKeyHash('hash-7');
    expect(a?.name).toBe('leaf-7');
    const reads = loader.reads;
    expect(await loader.byKeyHash('hash-7')).toBe(a);
    expect(await loader.byId(7)).toBe(a);
    expect(registry.byKeyHash('hash-7')).toBe(a);
    expect(loader.reads).toBe(reads);
  });

  it('looks an unknown key up once; a key taken later is found at once', async () => {
    expect(await loader.byKeyHash('nobody')).toBeUndefined();
    const reads = loader.reads;
    for (let i = 0; i < 5; i++) expect(await loader.byKeyHash('nobody')).toBeUndefined();
    expect(registry.isUnknownKey('nobody')).toBe(true);
    expect(loader.reads).toBe(reads);
    const made = account(16, 1, 'newcomer');
    made.keyHash = 'nobody';
    registry.add(made);
    expect(await loader.byKeyHash('nobody')).toBe(made);
  });

  it('finds names and e-mails in any case or normal form, from the store', async () => {
    expect((await loader.byName('JOSÉ'))?.id).toBe(13);
    expect((await loader.byName('jose\u0301'))?.id).toBe(13);
    expect((await loader.byEmail('josé@example.COM'))?.id).toBe(13);
    expect((await loader.byName('οδοσ'))?.id).toBe(14);
    expect((await loader.resolve('测试账号'))?.id).toBe(15);
    expect((await loader.resolve('ceshi@EXAMPLE.com'))?.id).toBe(15);
    expect(await loader.byName('测试帐号')).toBeUndefined();
    expect((await loader.resolve('7'))?.name).toBe('leaf-7');
  });

  it('a rename in memory not yet written hides the old name; written, the new one is found', async () => {
    const a = (await loader.byId(14))!;
    a.name = '道路名字';
    writer.markDirty(a);
    expect(await loader.byName('ΟΔΟΣ')).toBeUndefined();
    await writer.flush();
    expect(await loader.byName('道路名字')).toBe(a);
    expect(await loader.byName('ΟΔΟΣ')).toBeUndefined();
  });

  it('keeps the tree in the store: children, descendants, ancestry of accounts not loaded', async () => {
    const root = registry.root()!;
    expect((await loader.subtreePage(root, 'child', 0, 100)).ids).toEqual([15, 14, 13, 2]);
    expect(await loader.descendantIds(root)).toEqual([2, 13, 14, 15, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const reseller = (await loader.byId(2))!;
    expect(reseller.childCount).toBe(10);
    const leaf = (await loader.show([9]))[0]!;
    expect(leaf.name).toBe('leaf-9');
    // Shown, not loaded: a listing does not fill the cache.
    expect(registry.get(9)).toBeUndefined();
    expect(await loader.isAncestor(root, leaf)).toBe(true);
    expect(await loader.isAncestor(reseller, leaf)).toBe(true);
    expect(await loader.isAncestor((await loader.byId(13))!, leaf)).toBe(false);
    expect(await loader.names([3, 13, 99])).toEqual(
      new Map([
        [3, 'leaf-3'],
        [13, 'José'],
      ]),
    );
  });

  it('evicts idle accounts past its capacity, never held ones nor the root', async () => {
    build(5);
    await loadRoot(opened.store.db, registry, period());
    const busy = (await loader.byId(3))!;
    held.add(3);
    for (let id = 4; id <= 15; id++) await loader.byId(id);
    expect(registry.size).toBeLessThanOrEqual(5);
    expect(registry.evictions).toBeGreaterThan(0);
    expect(registry.root()).toBeDefined();
    expect(registry.get(1)).toBe(registry.root());
    expect(registry.get(3)).toBe(busy);
  });

  it('comes back within its capacity once the accounts that held it over are written', async () => {
    build(5);
    await loadRoot(opened.store.db, registry, period());
    // A burst: every account is in use while the others load, then has unwritten state.
    for (let id = 2; id <= 12; id++) held.add(id);
    for (let id = 2; id <= 12; id++) writer.markDirty((await loader.byId(id))!);
    held.clear();
    expect(registry.size).toBe(12);
    await writer.flush();
    expect(registry.size).toBeLessThanOrEqual(5);
    expect(registry.root()).toBeDefined();
  });

  it('an evicted account still referenced comes back as the same object, with what it got meanwhile', async () => {
    build(5);
    await loadRoot(opened.store.db, registry, period());
    const kept = (await loader.byId(3))!;
    for (let id = 4; id <= 15; id++) await loader.byId(id);
    expect(registry.byKeyHash('hash-3')).toBeUndefined();
    // A settlement on the evicted object (a request that authenticated before the eviction).
    kept.creditUsed += 5;
    kept.requests++;
    writer.markDirty(kept);
    expect(await loader.byKeyHash('hash-3')).toBe(kept);
    expect(await loader.byId(3)).toBe(kept);
    await writer.flush();
    const row = await opened.store.db
      .selectFrom('accounts')
      .select(['credit_used', 'requests'])
      .where('id', '=', 3)
      .executeTakeFirstOrThrow();
    expect([Number(row.credit_used), Number(row.requests)]).toEqual([5, 1]);
  });

  it('reads again when a write completed during the read', async () => {
    let writes = 0;
    let asked = 0;
    const racing = new AccountLoader({
      db: opened.store.db,
      registry,
      // The second look (after the first read) sees one more completed write.
      writer: {
        get writes() {
          asked++;
          if (asked === 2) writes++;
          return writes;
        },
        isGone: () => false,
        flush: () => Promise.resolve(),
      },
      period,
    });
    const a = await racing.byId(5);
    expect(a?.name).toBe('leaf-5');
    expect(racing.reads).toBe(2);
  });

  it('concurrent first uses of one account make one object', async () => {
    const got = await Promise.all([
      loader.byId(6),
      loader.byKeyHash('hash-6'),
      loader.byId(6),
      loader.resolve('6'),
    ]);
    expect(new Set(got).size).toBe(1);
    expect(got[0]?.name).toBe('leaf-6');
  });

  it('loses no update while accounts are evicted, revived and read again under concurrent use', async () => {
    // Capacity 3 over 14 accounts, a flush every few milliseconds: reads of rows race with
    // writes, objects are evicted while requests hold them between authentication and settlement,
    // and even with state not yet written (no pinning): revival and re-reads alone keep it exact.
    build(3, false);
    await loadRoot(opened.store.db, registry, period());
    const flusher = setInterval(() => void writer.flush().catch(() => undefined), 3);
    const expected = new Map<number, number>();
    let seed = 11;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
      return seed % n;
    };
    const request = async (): Promise<void> => {
      const id = 2 + rand(14);
      const a = await (rand(2) === 0 ? loader.byId(id) : loader.byKeyHash(`hash-${id}`));
      if (a === undefined) throw new Error(`account ${id} not found`);
      // Between authentication and settlement, as a request that waits for upstream.
      await new Promise((r) => setTimeout(r, rand(4)));
      a.creditUsed += 3;
      a.requests++;
      writer.markDirty(a);
      expected.set(id, (expected.get(id) ?? 0) + 3);
    };
    try {
      for (let round = 0; round < 100; round++) await Promise.all(Array.from({ length: 8 }, request));
    } finally {
      clearInterval(flusher);
    }
    await writer.flush();
    expect(registry.evictions).toBeGreaterThan(10);
    const rows = await opened.store.db
      .selectFrom('accounts')
      .select(['id', 'credit_used', 'requests'])
      .execute();
    for (const r of rows) {
      const want = expected.get(r.id) ?? 0;
      expect({ id: r.id, used: Number(r.credit_used), requests: Number(r.requests) }).toEqual({
        id: r.id,
        used: want,
        requests: want / 3,
      });
    }
  });

  it('pages the children and the descendants from the store, newest first, with their count', async () => {
    const root = registry.root()!;
    const page = (scope: 'child' | 'descendant', offset: number, limit: number) =>
      loader.subtreePage(root, scope, offset, limit);
    expect(await page('child', 0, 3)).toEqual({ ids: [15, 14, 13], total: 4 });
    expect(await page('child', 3, 3)).toEqual({ ids: [2], total: 4 });
    expect(await page('child', 6, 3)).toEqual({ ids: [], total: 4 });
    expect(await page('descendant', 0, 5)).toEqual({ ids: [15, 14, 13, 12, 11], total: 14 });
    expect(await page('descendant', 10, 5)).toEqual({ ids: [5, 4, 3, 2], total: 14 });
    const reseller = (await loader.byId(2))!;
    expect(await loader.subtreePage(reseller, 'descendant', 0, 100)).toEqual({
      ids: [12, 11, 10, 9, 8, 7, 6, 5, 4, 3],
      total: 10,
    });
    // Made and deleted here, neither written yet: the page is read after they are.
    const made = account(16, 2, 'newcomer');
    registry.add(made);
    writer.markDirty(made);
    const gone = (await loader.byId(12))!;
    registry.remove(gone);
    writer.markDeleted(gone);
    expect(await loader.subtreePage(reseller, 'child', 0, 3)).toEqual({ ids: [16, 11, 10], total: 10 });
    expect(await page('descendant', 0, 100)).toEqual({
      ids: [16, 15, 14, 13, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2],
      total: 14,
    });
  });

  it('lists a tree with a level of 200,000 accounts: its descendants, and a page with their count', async () => {
    // Under the reseller (2), in one statement on either backend.
    await sql`with recursive n(i) as (select 1 union all select i + 1 from n where i < 200000)
      insert into accounts (id, parent_id, name, email, name_key, email_key, alias, key_hash, partial_key,
        level, rates, rate_limit, child_limit, hard_limit, soft_limit, status, is_root, credit_granted,
        credit_used, requests, created_at, updated_at)
      select 100 + i, 2, 'n' || i, 'n' || i || '@x', 'n' || i, 'n' || i || '@x', 'n' || i, 'h' || i, 'p',
        0, 1000000, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1 from n`.execute(opened.store.db);
    const root = registry.root()!;
    const all = await loader.descendantIds(root);
    expect(all.length).toBe(14 + 200_000);
    expect(await loader.subtreePage(root, 'descendant', 0, 2)).toEqual({
      ids: [200_100, 200_099],
      total: 200_014,
    });
    const reseller = (await loader.byId(2))!;
    expect(await loader.subtreePage(reseller, 'child', 200_009, 5)).toEqual({ ids: [3], total: 200_010 });
  }, 120_000);

  it('does not load again an account deleted here and not yet written', async () => {
    const a = (await loader.byId(12))!;
    registry.remove(a);
    writer.markDeleted(a);
    expect(await loader.byId(12)).toBeUndefined();
    expect(await loader.byKeyHash('hash-12')).toBeUndefined();
    expect((await loader.subtreePage((await loader.byId(2))!, 'child', 0, 100)).ids).not.toContain(12);
  });
});
