// Credit leases and the delta sink on a real PostgreSQL: what several instances use to share one
// account's money. Grants never exceed what is spendable or the HardLimit headroom; settlements
// spend cards earliest expiry first, shrink the lease, and apply once even when written twice.
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Batch, LedgerRow, UsageRow } from '../../src/store/batch-sink.js';
import type { SharedMoney, Store } from '../../src/store/store.js';
import { postgresBackend, storeBackends, type OpenedStore } from '../support/stores.js';
import { NO_LOG_DETAIL } from '../../src/store/batch-sink.js';

const hasPostgres = storeBackends().some((b) => b.name === 'postgres');
const NOW = 1_800_000_000_000;
const DAY = 86_400_000;

let opened: OpenedStore;
let store: Store;
let shared: SharedMoney;

async function account(
  id: number,
  cards: Array<[balance: number, expiresAt: number]>,
  opts: { root?: boolean; hardLimit?: number } = {},
) {
  await store.db
    .insertInto('accounts')
    .values({
      id,
      parent_id: null,
      name: `acct${id}`,
      email: `a${id}@example.com`,
      name_key: `acct${id}`,
      email_key: `a${id}@example.com`,
      alias: `a${id}`,
      billing_email: null,
      key_hash: `hash${id}`,
      partial_key: 'x',
      level: 0,
      rates: 1_000_000,
      rate_limit: 60,
      child_limit: 10,
      hard_limit: opts.hardLimit ?? 1_000_000_000,
      soft_limit: 0,
      status: 1,
      is_root: opts.root === true ? 1 : 0,
      allow_ips: null,
      allow_models: null,
      allow_endpoints: null,
      credit_granted: 0,
      credit_used: 0,
      requests: 0,
      soft_notice_month: null,
      created_at: NOW,
      updated_at: NOW,
    })
    .execute();
  for (const [i, [balance, expiresAt]] of cards.entries()) {
    await store.db
      .insertInto('credit_cards')
      .values({
        account_id: id,
        amount: balance,
        balance,
        granted_at: NOW - DAY + i,
        expires_at: expiresAt,
        reference: null,
      })
      .execute();
  }
}

async function money(id: number) {
  const a = await store.db
    .selectFrom('accounts')
    .select(['leased', 'credit_used', 'requests'])
    .where('id', '=', id)
    .executeTakeFirstOrThrow();
  const cards = await store.db
    .selectFrom('credit_cards')
    .select(['balance', 'expires_at'])
    .where('account_id', '=', id)
    .orderBy('expires_at')
    .execute();
  const leases = await store.db
    .selectFrom('leases')
    .select(['instance_id', 'amount'])
    .where('account_id', '=', id)
    .orderBy('instance_id')
    .execute();
  return {
    leased: Number(a.leased),
    creditUsed: Number(a.credit_used),
    requests: Number(a.requests),
    cards: cards.map((c) => Number(c.balance)),
    leases: Object.fromEntries(leases.map((l) => [l.instance_id, Number(l.amount)])),
  };
}

function usage(requestId: string, accountId: number, cost: number, day = '2027-01-15'): UsageRow {
  return {
    request_id: requestId,
    account_id: accountId,
    model: 'gpt-4o-mini',
    path: '/v1/chat/completions',
    day,
    prompt_tokens: 10,
    cached_tokens: 0,
    completion_tokens: 5,
    cost,
    status: 200,
    outcome: 'completed',
    attempts: 1,
    usage_source: 'upstream',
    ...NO_LOG_DETAIL,
    created_at: NOW,
  };
}

function ledger(requestId: string, accountId: number, cost: number): LedgerRow {
  return {
    account_id: accountId,
    kind: 'usage',
    amount: -cost,
    request_id: requestId,
    note: 'gpt-4o-mini',
    created_at: NOW,
  };
}

function batch(usageRows: UsageRow[], ledgerRows: LedgerRow[]): Batch {
  return {
    accounts: [],
    cards: new Map(),
    deleted: [],
    ledger: ledgerRows,
    usage: usageRows,
    daily: [],
    objects: [],
  };
}

const acquire = (accountId: number, instanceId: string, want: number, horizonMs = 60_000) =>
  shared.leases.acquire({ accountId, instanceId, want, now: NOW, horizonMs, monthStart: '2027-01-01' });

describe.runIf(hasPostgres)('shared money on PostgreSQL', () => {
  beforeEach(async () => {
    opened = await postgresBackend.open();
    store = opened.store;
    if (store.shared === undefined) throw new Error('a PostgreSQL store shares money');
    shared = store.shared;
  });
  afterEach(async () => {
    await opened.dispose();
  });

  it('grants at most what is spendable, minus other leases, minus cards about to expire', async () => {
    await account(1, [
      [3_000_000, NOW + 30_000], // expires within the horizon: never leased
      [5_000_000, NOW + 10 * DAY],
    ]);
    expect(await acquire(1, 'a', 4_000_000)).toMatchObject({
      granted: 4_000_000,
      bound: undefined,
      balance: 8_000_000,
    });
    expect(await acquire(1, 'b', 4_000_000)).toMatchObject({ granted: 1_000_000, bound: 'balance' });
    expect(await acquire(1, 'a', 1)).toMatchObject({ granted: 0, bound: 'balance' });
    expect(await money(1)).toMatchObject({ leased: 5_000_000, leases: { a: 4_000_000, b: 1_000_000 } });
    await shared.leases.release(1, 'a', 10_000_000, NOW); // never more than held
    expect(await money(1)).toMatchObject({ leased: 1_000_000, leases: { b: 1_000_000 } });
    expect(await acquire(1, 'c', 9_000_000)).toMatchObject({ granted: 4_000_000 });
  });

  it('bounds a grant by the HardLimit headroom: the month’s committed cost and every lease count', async () => {
    await account(2, [[50_000_000, NOW + 10 * DAY]], { hardLimit: 10_000_000 });
    await store.db
      .insertInto('usage_daily')
      .values({
        account_id: 2,
        day: '2027-01-03',
        model: 'm',
        requests: 1,
        cost: 6_000_000,
        prompt_tokens: 0,
        completion_tokens: 0,
      })
      .execute();
    expect(await acquire(2, 'a', 3_000_000)).toMatchObject({ granted: 3_000_000, monthCost: 6_000_000 });
    expect(await acquire(2, 'b', 3_000_000)).toMatchObject({ granted: 1_000_000, bound: 'hard-limit' });
  });

  it('settles from the lease in deltas: cards earliest expiry first, lease and leased shrink, applied once', async () => {
    await account(3, [
      [2_000_000, NOW + 20 * DAY],
      [1_000_000, NOW + 5 * DAY],
    ]);
    await acquire(3, 'a', 3_000_000);
    const sink = shared.deltaSink('a', () => NOW);
    const b = batch(
      [usage('r1', 3, 700_000), usage('r2', 3, 600_000)],
      [ledger('r1', 3, 700_000), ledger('r2', 3, 600_000)],
    );
    await sink.write(b);
    expect(await money(3)).toEqual({
      leased: 1_700_000,
      creditUsed: 1_300_000,
      requests: 2,
      cards: [0, 1_700_000], // the card expiring first is spent first
      leases: { a: 1_700_000 },
    });
    // The same batch again (a COMMIT whose answer was lost, a replay): nothing changes.
    await sink.write(b);
    expect((await money(3)).creditUsed).toBe(1_300_000);
    const ledgerRows = await store.db
      .selectFrom('ledger')
      .select('amount')
      .where('account_id', '=', 3)
      .execute();
    expect(ledgerRows.map((r) => Number(r.amount)).sort()).toEqual([-700_000, -600_000].sort());
    const daily = await store.db.selectFrom('usage_daily').selectAll().where('account_id', '=', 3).execute();
    expect(daily.map((d) => [Number(d.requests), Number(d.cost)])).toEqual([[2, 1_300_000]]);
  });

  it('gives a dead instance’s leases back once, and its late settlements do not give them back again', async () => {
    await account(4, [[10_000_000, NOW + 10 * DAY]]);
    await acquire(4, 'dead', 6_000_000);
    await acquire(4, 'alive', 2_000_000);
    expect(await shared.leases.reclaim('dead')).toBe(1);
    expect(await shared.leases.reclaim('dead')).toBe(0);
    expect(await money(4)).toMatchObject({ leased: 2_000_000, leases: { alive: 2_000_000 } });
    // A settlement the dead instance flushes after all: billed from the cards, lease untouched.
    await shared
      .deltaSink('dead', () => NOW)
      .write(batch([usage('late', 4, 500_000)], [ledger('late', 4, 500_000)]));
    expect(await money(4)).toMatchObject({ leased: 2_000_000, creditUsed: 500_000, cards: [9_500_000] });
  });

  it('bills root without cards or a lease', async () => {
    await account(5, [], { root: true });
    await shared.deltaSink('a', () => NOW).write(batch([usage('root1', 5, 900_000)], []));
    expect(await money(5)).toMatchObject({ leased: 0, creditUsed: 900_000, requests: 1, cards: [] });
  });

  it('never grants more than the balance to many instances asking at once', async () => {
    await account(6, [[10_000_000, NOW + 10 * DAY]]);
    const grants = await Promise.all(Array.from({ length: 12 }, (_, i) => acquire(6, `i${i}`, 1_500_000)));
    expect(grants.reduce((s, g) => s + g.granted, 0)).toBe(10_000_000);
    expect((await money(6)).leased).toBe(10_000_000);
    const count = await sql<{
      n: number;
    }>`select count(*)::int as n from leases where account_id = 6`.execute(store.db);
    expect(count.rows[0]?.n).toBeGreaterThanOrEqual(7);
  });
});
