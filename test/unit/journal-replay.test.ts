// Replaying the settlement journal after a crash: the settlements the store lacks are applied as
// they were (cards earliest expiry first, counters, windows, ledger and usage rows), those it has
// are not applied again, and a data directory copied between two flushes — what a kill -9 leaves —
// starts with the very books the dead process had in memory.
import { appendFileSync, cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Account } from '../../src/accounts/account.js';
import { newRootAccount } from '../../src/accounts/load-accounts.js';
import { RateLimiter } from '../../src/accounts/rate-limiter.js';
import { Calendar } from '../../src/billing/calendar.js';
import { Meter } from '../../src/billing/meter.js';
import { RATE_ONE } from '../../src/billing/money.js';
import { loadPriceTable } from '../../src/billing/price-table.js';
import { replayJournal } from '../../src/journal/replay-journal.js';
import { encodeEntry, type SettlementEntry } from '../../src/journal/settlement-entry.js';
import type { LedgerRow, UsageRow } from '../../src/store/batch-sink.js';
import { openStore, type Store } from '../../src/store/store.js';
import type { ObjectRecord } from '../../src/tenancy/object-registry.js';
import { createChild, loadedByName } from '../support/accounts.js';
import { ROOT_KEY, startGateway, type TestGateway } from '../support/gateway.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { NO_LOG_DETAIL } from '../../src/store/batch-sink.js';

const log = pino({ level: 'silent' });
const prices = loadPriceTable(new URL('../../config/prices.json', import.meta.url).pathname);
const DAY = 86_400_000;
const NOW = Date.UTC(2026, 4, 20, 12);

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'proxyxai-replay-'));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A meter over a writer that keeps what it is given. */
function harness(clock = (): number => NOW) {
  const ledger: LedgerRow[] = [];
  const usage: UsageRow[] = [];
  const dirty = new Set<number>();
  const writer = {
    markDirty: (a: Account) => void dirty.add(a.id),
    addLedger: (r: LedgerRow) => void ledger.push(r),
    addUsage: (r: UsageRow) => void usage.push(r),
    backlogged: () => false,
  };
  const meter = new Meter(
    prices,
    new Calendar('UTC'),
    new RateLimiter(),
    writer,
    { maxOutputTokensCap: 1000 },
    () => undefined,
    clock,
  );
  return { meter, ledger, usage, dirty };
}

function child(id: number): Account {
  const a = newRootAccount(id, 'c@example.com', 'hash', 'partial', NOW - 40 * DAY, {
    day: '2026-05-20',
    month: '2026-05',
  });
  return { ...a, isRoot: false, parentId: 1, name: `child-${id}`, rates: RATE_ONE, creditGranted: 30 };
}

function settled(account: number, id: string, cost: number, at: number, day: string): SettlementEntry {
  return {
    account,
    at,
    rows: [
      {
        request_id: id,
        account_id: account,
        model: 'gpt-4o-mini',
        path: '/v1/chat/completions',
        day,
        prompt_tokens: 5,
        cached_tokens: 0,
        completion_tokens: 7,
        cost,
        status: 200,
        outcome: 'completed',
        attempts: 1,
        usage_source: 'upstream',
        ...NO_LOG_DETAIL,
        created_at: at,
      },
    ],
  };
}

describe('Meter.replay', () => {
  it('spends the cards earliest expiry first as of the settlement, and books counters, ledger and usage', () => {
    const h = harness();
    const a = child(5);
    a.cards = [
      { amount: 20, balance: 20, grantedAt: NOW - 30 * DAY, expiresAt: NOW + 300 * DAY },
      { amount: 10, balance: 10, grantedAt: NOW - 20 * DAY, expiresAt: NOW + 10 * DAY },
    ];
    const e = settled(5, 'req_a', 12, NOW - 1000, '2026-05-20');
    expect(h.meter.replay(a, e)).toBe(12);
    expect(a.cards.map((c) => c.balance)).toEqual([18, 0]);
    expect(a).toMatchObject({
      creditUsed: 12,
      requests: 1,
      reserved: 0,
      day: { period: '2026-05-20', cost: 12, requests: 1 },
      month: { period: '2026-05', cost: 12, requests: 1 },
    });
    expect(h.usage).toEqual(e.rows);
    expect(h.ledger).toEqual([
      {
        account_id: 5,
        kind: 'usage',
        amount: -12,
        request_id: 'req_a',
        note: 'gpt-4o-mini',
        created_at: NOW - 1000,
      },
    ]);
    expect([...h.dirty]).toEqual([5]);
  });

  it('counts a settlement of an earlier day in the month only, and of an earlier month in neither', () => {
    const h = harness();
    const a = child(5);
    a.cards = [{ amount: 100, balance: 100, grantedAt: NOW - 60 * DAY, expiresAt: NOW + 300 * DAY }];
    h.meter.replay(a, settled(5, 'yesterday', 3, NOW - DAY, '2026-05-19'));
    h.meter.replay(a, settled(5, 'last-month', 4, NOW - 30 * DAY, '2026-04-20'));
    expect(a).toMatchObject({
      creditUsed: 7,
      requests: 2,
      day: { cost: 0, requests: 0 },
      month: { cost: 3, requests: 1 },
    });
  });

  it('never takes more than the cards hold, and books what it took', () => {
    const h = harness();
    const a = child(5);
    a.cards = [{ amount: 10, balance: 4, grantedAt: NOW - 60 * DAY, expiresAt: NOW + 300 * DAY }];
    expect(h.meter.replay(a, settled(5, 'big', 9, NOW, '2026-05-20'))).toBe(4);
    expect(a.cards[0]!.balance).toBe(0);
    expect(h.usage[0]!.cost).toBe(4);
    expect(h.ledger[0]!.amount).toBe(-4);
  });

  it('books the root account without cards or ledger rows', () => {
    const h = harness();
    const root = newRootAccount(1, 'r@example.com', 'hash', 'partial', NOW, {
      day: '2026-05-20',
      month: '2026-05',
    });
    expect(h.meter.replay(root, settled(1, 'root', 9, NOW, '2026-05-20'))).toBe(9);
    expect(root.creditUsed).toBe(9);
    expect(h.ledger).toEqual([]);
    expect(h.usage).toHaveLength(1);
  });
});

describe('replayJournal', () => {
  async function sqlite(): Promise<Store> {
    const store = await openStore({ kind: 'sqlite', dataDir: tempDir() }, log);
    cleanups.push(() => store.close());
    return store;
  }

  it('applies what the store lacks once, drops deleted accounts, and closes the follow of replayed work', async () => {
    const store = await sqlite();
    await store.db
      .insertInto('usage_records')
      .values({ ...settled(5, 'stored', 1, NOW, '2026-05-20').rows[0]! })
      .execute();
    const h = harness();
    const a = child(5);
    a.cards = [{ amount: 100, balance: 100, grantedAt: NOW - 60 * DAY, expiresAt: NOW + 300 * DAY }];
    const batch: ObjectRecord = {
      id: 'batch_1',
      kind: 'batch',
      accountId: 5,
      keyId: 1,
      keyGroup: null,
      createdAt: NOW,
      tag: null,
      deletedAt: null,
      follow: { state: 'open', reserved: 50, requestId: 'batch_1', model: null, pricePercent: 50 },
    };
    const other: ObjectRecord = {
      ...batch,
      id: 'batch_2',
      follow: { state: 'open', reserved: 50, requestId: 'batch_2', model: null, pricePercent: 50 },
    };
    const closed: string[] = [];
    let flushed = 0;
    const calls: string[] = [];
    const journal = {
      recovered: [
        settled(5, 'stored', 1, NOW, '2026-05-20'),
        settled(5, 'new', 2, NOW, '2026-05-20'),
        settled(5, 'new', 2, NOW, '2026-05-20'),
        settled(9, 'orphan', 3, NOW, '2026-05-20'),
        settled(5, 'batch_1', 10, NOW, '2026-05-20'),
      ],
      skipped: 1,
      replayed: () => void calls.push('replayed'),
      dropRecovered: () => void calls.push('dropped'),
    };
    const report = await replayJournal({
      journal,
      db: store.db,
      account: (id) => Promise.resolve(id === 5 ? a : undefined),
      meter: h.meter,
      follows: {
        openFollows: () => Promise.resolve([batch, other]),
        setFollow: (rec, follow) => {
          expect(follow).toEqual({ state: 'done' });
          closed.push(rec.id);
        },
      },
      flush: () => {
        flushed++;
        calls.push('flush');
        return Promise.resolve();
      },
      log,
    });
    expect(report).toEqual({ found: 5, skipped: 1, stored: 2, applied: 2, orphaned: 1, charged: 12 });
    expect(h.usage.map((u) => u.request_id)).toEqual(['new', 'batch_1']);
    expect(a.creditUsed).toBe(12);
    expect(closed).toEqual(['batch_1']);
    // The files are covered by the flush that follows the replay, not before.
    expect(calls).toEqual(['replayed', 'flush']);
    expect(flushed).toBe(1);
  });

  it('with nothing to apply, drops the files at once and writes nothing', async () => {
    const store = await sqlite();
    const calls: string[] = [];
    const report = await replayJournal({
      journal: {
        recovered: [],
        skipped: 0,
        replayed: () => void calls.push('replayed'),
        dropRecovered: () => void calls.push('dropped'),
      },
      db: store.db,
      account: () => Promise.resolve(undefined),
      meter: harness().meter,
      follows: { openFollows: () => Promise.resolve([]), setFollow: () => undefined },
      flush: () => {
        calls.push('flush');
        return Promise.resolve();
      },
      log,
    });
    expect(report.applied).toBe(0);
    expect(calls).toEqual(['dropped']);
  });
});

describe('a data directory copied between two flushes (what kill -9 leaves)', () => {
  let mock: MockUpstream;
  const env = (m: MockUpstream): Record<string, string> => ({
    OPENAI_API_BASE: m.url,
    INIT_KEYS: 'sk-upstream-journal-replay-00000001',
    // Nothing reaches the store on its own while the test runs.
    FLUSH_INTERVAL_MS: '60000',
    STATS_INTERVAL: '100000',
  });

  async function start(dataDir?: string, extra: Record<string, string> = {}): Promise<TestGateway> {
    const gw = await startGateway({ ...env(mock), ...extra }, dataDir === undefined ? {} : { dataDir });
    cleanups.push(() => gw.stop());
    return gw;
  }

  async function books(gw: TestGateway, name: string) {
    const a = (await gw.app.accounts.byName(name))!;
    const db = gw.app.store.db;
    const ledger = await db.selectFrom('ledger').select('amount').where('account_id', '=', a.id).execute();
    const usage = await db
      .selectFrom('usage_records')
      .select('request_id')
      .where('account_id', '=', a.id)
      .execute();
    return {
      creditUsed: a.creditUsed,
      requests: a.requests,
      cards: a.cards.map((c) => c.balance),
      month: a.month,
      ledger: ledger.reduce((s, r) => s + Number(r.amount), 0),
      usage: usage.map((u) => u.request_id).sort(),
    };
  }

  it('starts with the books the dead process had in memory, and a second replay changes nothing', async () => {
    mock = await startMockUpstream();
    cleanups.push(() => mock.close());
    const gw = await start();
    const key = await createChild(gw, 'alice', 50);
    const alice = gw.client(key);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await alice.chat.completions
        .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `hi ${i}` }] })
        .withResponse();
      ids.push(r.response.headers.get('x-request-id')!);
      const s = await alice.chat.completions
        .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `s ${i}` }], stream: true })
        .withResponse();
      for await (const chunk of s.data) void chunk;
      ids.push(s.response.headers.get('x-request-id')!);
    }
    await gw
      .client(ROOT_KEY)
      .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'r' }] });
    const a = loadedByName(gw.app, 'alice')!;
    expect(a.creditUsed).toBeGreaterThan(0);
    // Every settlement is in memory and in the journal, none in the store.
    expect(await gw.app.store.db.selectFrom('usage_records').selectAll().execute()).toEqual([]);
    const crashed = tempDir();
    cpSync(gw.dataDir, crashed, { recursive: true });
    const journalDir = join(crashed, 'journal');
    const journalFiles = readdirSync(journalDir);
    expect(journalFiles.length).toBeGreaterThan(0);
    // The kill came in the middle of a write.
    appendFileSync(
      join(journalDir, journalFiles.sort().at(-1)!),
      encodeEntry(settled(a.id, 'torn', 1, NOW, '2026-05-20')).slice(0, 40),
    );
    const memory = {
      creditUsed: a.creditUsed,
      requests: a.requests,
      cards: a.cards.map((c) => c.balance),
      month: a.month,
    };

    // Even with the journal turned off since, what the crash left is replayed.
    const after = await start(crashed, { JOURNAL: 'off' });
    expect(await books(after, 'alice')).toEqual({
      ...memory,
      ledger: 50_000_000 - a.creditUsed,
      usage: [...ids].sort(),
    });
    expect(after.app.registry.root()!.creditUsed).toBe(gw.app.registry.root()!.creditUsed);
    const replayed = after.logs
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => 'applied' in l);
    expect(replayed).toMatchObject({ applied: ids.length + 1, skipped: 1, stored: 0 });
    expect(readdirSync(journalDir)).toEqual([]);
    await after.stop();

    // The same journal files once more (a crash right after the replay, before they were deleted).
    cpSync(join(gw.dataDir, 'journal'), journalDir, { recursive: true });
    const again = await start(crashed);
    expect(await books(again, 'alice')).toEqual({
      ...memory,
      ledger: 50_000_000 - a.creditUsed,
      usage: [...ids].sort(),
    });
    expect(readdirSync(journalDir)).toEqual([]);
  });
});
