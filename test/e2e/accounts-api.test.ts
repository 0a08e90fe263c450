/**
 * The sub-account API (/x-users, /x-dna) end to end over HTTP against the real gateway: the spec
 * §4.7 worked example with every number it gives, the ledger invariant in the database, and
 * persistence across a restart.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, removeDir, startGateway, type TestGateway } from '../support/gateway.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';

type Json = Record<string, unknown>;
interface Card {
  amount: number;
  balance: number;
  granted_at: string;
  expires_at: string;
  reference?: string;
}

const DAY_MS = 86_400_000;
let mock: MockUpstream;
let gw: TestGateway;

beforeAll(async () => {
  mock = await startMockUpstream();
  gw = await startGateway({ OPENAI_API_BASE: mock.url });
});

afterAll(async () => {
  await gw.stop();
  removeDir(gw.dataDir);
  await mock.close();
});

async function ok(res: Promise<Response>): Promise<Json> {
  const r = await res;
  const body = (await r.json()) as Json;
  if (r.status !== 200) throw new Error(`expected 200, got ${r.status}: ${JSON.stringify(body)}`);
  return body;
}

function amounts(cards: unknown): Array<[number, number]> {
  return (cards as Card[]).map((c) => [c.amount, c.balance]);
}

function user(body: Json): Json & { Updates: Json } {
  return body['User'] as Json & { Updates: Json };
}

function parent(body: Json): Json {
  return body['Parent'] as Json;
}

/** Σ ledger amounts per account id, from the database. */
async function ledgerSums(g: TestGateway): Promise<Map<number, number>> {
  const rows = await g.app.store.db.selectFrom('ledger').select(['account_id', 'amount']).execute();
  const sums = new Map<number, number>();
  for (const r of rows) sums.set(r.account_id, (sums.get(r.account_id) ?? 0) + Number(r.amount));
  return sums;
}

/** Live balance per account in micros, from the database cards (no card expires in these tests). */
async function cardSums(g: TestGateway): Promise<Map<number, number>> {
  const accounts = await g.app.store.db.selectFrom('accounts').select(['id']).execute();
  const cards = await g.app.store.db.selectFrom('credit_cards').select(['account_id', 'balance']).execute();
  const sums = new Map<number, number>(accounts.map((a) => [a.id, 0]));
  for (const c of cards) sums.set(c.account_id, (sums.get(c.account_id) ?? 0) + Number(c.balance));
  return sums;
}

async function expectLedgerMatchesBalances(g: TestGateway): Promise<void> {
  const ledger = await ledgerSums(g);
  const cards = await cardSums(g);
  for (const [id, balance] of cards)
    expect({ id, ledger: ledger.get(id) ?? 0 }).toEqual({ id, ledger: balance });
  // The in-memory balances agree with the store.
  for (const a of g.app.registry.all()) {
    const live = a.cards.reduce((s, c) => s + c.balance, 0);
    expect({ id: a.id, live }).toEqual({ id: a.id, live: cards.get(a.id) });
  }
}

describe('spec §4.7 worked example over HTTP', () => {
  let betaKey = '';
  let betaId = 0;
  let child1Id = 0;

  it('1. root creates beta with 10000 (root pays nothing); beta creates child-1 with 100', async () => {
    const beta = await ok(
      call(gw, '/x-users', { body: { Name: 'beta', Email: 'beta@example.com', CreditGranted: 10000 } }),
    );
    expect(beta['Action']).toBe('add');
    expect(parent(beta)).toMatchObject({ Name: 'root', Balance: null, CreditBalance: [], Child: 1 });
    betaKey = user(beta)['SecretKey'] as string;
    betaId = user(beta)['ID'] as number;
    expect(betaKey).toMatch(/^sk-Xvs[A-Za-z0-9]{45}$/);
    expect(amounts(user(beta).Updates['CreditBalance'])).toEqual([[10000, 10000]]);
    expect(user(beta).Updates).toMatchObject({ HardLimit: 10000, SoftLimit: 8000, Rates: 1, Level: 0 });

    const c1 = await ok(
      call(gw, '/x-users', {
        key: betaKey,
        body: { Name: 'child-1', Email: 'child-1@example.com', CreditGranted: 100 },
      }),
    );
    // Exactly the spec's response shape.
    expect(Object.keys(c1).sort()).toEqual(['Action', 'Parent', 'User']);
    expect(Object.keys(parent(c1)).sort()).toEqual(
      [
        'ID',
        'Name',
        'Level',
        'Rates',
        'Child',
        'ChildLimit',
        'CreditBalance',
        'Balance',
        'HardLimit',
        'SoftLimit',
        'RateLimit',
      ].sort(),
    );
    expect(Object.keys(user(c1)).sort()).toEqual(['Alias', 'ID', 'Name', 'SecretKey', 'Updates']);
    expect(Object.keys(user(c1).Updates).sort()).toEqual(
      [
        'Name',
        'Email',
        'Level',
        'Rates',
        'Child',
        'CreditBalance',
        'CreditGranted',
        'HardLimit',
        'SoftLimit',
        'RateLimit',
      ].sort(),
    );
    expect(parent(c1)).toMatchObject({ ID: betaId, Name: 'beta', Child: 1, Balance: 9900, Rates: 1 });
    expect(amounts(parent(c1)['CreditBalance'])).toEqual([[10000, 9900]]);
    child1Id = user(c1)['ID'] as number;
    expect(user(c1)).toMatchObject({ Name: 'child-1', Alias: 'child-1' });
    expect(user(c1).Updates).toMatchObject({
      Name: 'child-1',
      Email: 'child-1@example.com',
      Level: 0,
      Rates: 1,
      Child: 0,
      CreditGranted: 100,
      HardLimit: 100,
      SoftLimit: 80,
      RateLimit: 6666666,
    });
    expect(amounts(user(c1).Updates['CreditBalance'])).toEqual([[100, 100]]);
    const card = (user(c1).Updates['CreditBalance'] as Card[])[0] as Card;
    const validity = Date.parse(card.expires_at) - Date.parse(card.granted_at);
    expect(validity).toBe(365 * DAY_MS);
  });

  it('2. child-2 with 100 → parent 9800; recharge child-1 80 → parent 9720, child cards 100 + 80', async () => {
    const c2 = await ok(
      call(gw, '/x-users', {
        key: betaKey,
        body: { Name: 'child-2', Email: 'child-2@example.com', CreditGranted: 100 },
      }),
    );
    expect(parent(c2)['Balance']).toBe(9800);
    const r = await ok(
      call(gw, '/x-users/child-1', { method: 'PUT', key: betaKey, body: { CreditGranted: 80 } }),
    );
    expect(r['Action']).toBe('update');
    expect(parent(r)).toMatchObject({ ID: betaId, Balance: 9720, Child: 2 });
    expect(amounts(parent(r)['CreditBalance'])).toEqual([[10000, 9720]]);
    expect(amounts(user(r).Updates['CreditBalance'])).toEqual([
      [100, 100],
      [80, 80],
    ]);
    // §4.5: a balance of 180 raises HardLimit to 200; SoftLimit stays 80.
    expect(user(r).Updates).toMatchObject({ Balance: 180, CreditGranted: 80, HardLimit: 200, SoftLimit: 80 });
    for (const k of [
      'Balance',
      'CreditBalance',
      'CreditGranted',
      'ChildLimit',
      'Email',
      'HardLimit',
      'Level',
    ]) {
      expect(user(r).Updates).toHaveProperty(k);
    }
    for (const k of ['Name', 'RateLimit', 'Rates', 'SoftLimit', 'Status'])
      expect(user(r).Updates).toHaveProperty(k);
  });

  it('3. deduct 50 → child card 100/50; parent refund card 50, main card 9719.8, Balance 9769.8', async () => {
    const r = await ok(
      call(gw, `/x-users/${child1Id}`, { method: 'PUT', key: betaKey, body: { CreditGranted: -50 } }),
    );
    expect(amounts(user(r).Updates['CreditBalance'])).toEqual([
      [100, 50],
      [80, 80],
    ]);
    expect(user(r).Updates).toMatchObject({ Balance: 130, CreditGranted: -50 });
    expect(amounts(parent(r)['CreditBalance'])).toEqual([
      [10000, 9719.8],
      [50, 50],
    ]);
    expect(parent(r)['Balance']).toBe(9769.8);
  });

  it('4. child-1 Rates 2 → cards 200/100 and 160/160, Balance 260, HardLimit 300', async () => {
    const r = await ok(
      call(gw, '/x-users/child-1@example.com', { method: 'PUT', key: betaKey, body: { Rates: 2 } }),
    );
    expect(amounts(user(r).Updates['CreditBalance'])).toEqual([
      [200, 100],
      [160, 160],
    ]);
    expect(user(r).Updates).toMatchObject({ Rates: 2, Balance: 260, HardLimit: 300, SoftLimit: 80 });
    expect(parent(r)['Balance']).toBe(9769.8); // a change of units, not of value
  });

  it('5. delete child-1 → parent gets a 129.8 card valid 180 days', async () => {
    const before = Date.now();
    const r = await ok(call(gw, '/x-users/child-1', { method: 'DELETE', key: betaKey }));
    expect(r['Action']).toBe('delete');
    // The child's cards as they were at its deletion, exactly as in the original's example.
    expect(user(r)).toMatchObject({ ID: child1Id, Name: 'child-1', Rates: 2 });
    expect(amounts(user(r)['CreditBalance'])).toEqual([
      [200, 100],
      [160, 160],
    ]);
    const cards = parent(r)['CreditBalance'] as Card[];
    expect(amounts(cards)).toEqual([
      [10000, 9719.8],
      [50, 50],
      [129.8, 129.8],
    ]);
    const refund = cards[2] as Card;
    const expiry = Date.parse(refund.expires_at);
    expect(expiry).toBeGreaterThanOrEqual(before + 180 * DAY_MS - 1000);
    expect(expiry).toBeLessThanOrEqual(Date.now() + 180 * DAY_MS + 1000);
    expect(parent(r)).toMatchObject({ ID: betaId, Name: 'beta', Rates: 1, Balance: 9899.6 });

    const gone = await call(gw, '/x-users/child-1', { key: betaKey });
    expect(gone.status).toBe(404);
    const list = await ok(call(gw, `/x-users/${betaId}`));
    expect(list).toMatchObject([{ Child: 1, Balance: 9899.6 }]);
  });

  it('the ledger explains every balance: Σ ledger amounts = live balance for each account', async () => {
    await expectLedgerMatchesBalances(gw);
    const ledger = await ledgerSums(gw);
    expect(ledger.get(betaId)).toBe(9_899_600_000);
    // The deleted child's rows stay and sum to zero.
    expect(ledger.get(child1Id)).toBe(0);
    const fees = await gw.app.store.db
      .selectFrom('ledger')
      .select(['amount'])
      .where('account_id', '=', betaId)
      .where('kind', '=', 'fee')
      .execute();
    expect(fees.map((f) => Number(f.amount))).toEqual([-200_000, -200_000]);
  });

  it('listings show PascalCase users without keys; /x-dna shows the whole subtree', async () => {
    const rootList = (await ok(call(gw, '/x-users'))) as unknown as Json[];
    expect(rootList.map((u) => u['Name'])).toEqual(['beta']);
    const beta = rootList[0] as Json;
    expect(beta).toMatchObject({
      ID: betaId,
      ParentID: 1,
      Level: 0,
      Name: 'beta',
      Alias: 'beta',
      Email: 'beta@example.com',
      BillingEmail: null,
      Rates: 1,
      CreditUsed: 0,
      Balance: 9899.6,
      CreditGranted: 10000,
      RateLimit: 6666666,
      ChildLimit: 88888888,
      Child: 1,
      Requests: 0,
      Status: true,
      AllowIPs: ['*'],
      AllowModels: ['*'],
      SecretKey: '***',
      PartialKey: betaKey.slice(-20),
      DailyUsage: { CreditUsed: 0, Requests: 0 },
      MonthlyUsage: { CreditUsed: 0, Requests: 0 },
    });
    expect(typeof beta['CreatedAt']).toBe('string');
    expect(JSON.stringify(rootList)).not.toContain(betaKey);

    const dna = (await ok(call(gw, '/x-dna'))) as unknown as Json[];
    // Newest first, as the original lists them.
    expect(dna.map((u) => u['Name'])).toEqual(['child-2', 'beta']);
    expect(await ok(call(gw, '/x-dna/child-2'))).toMatchObject([{ Name: 'child-2', ParentID: betaId }]);
    // /x-users only shows direct children.
    expect((await call(gw, '/x-users/child-2')).status).toBe(404);
    expect(await ok(call(gw, '/x-users?name=child-2', { key: betaKey }))).toMatchObject([
      { Name: 'child-2' },
    ]);
    expect(gw.logs.join('\n')).not.toContain(betaKey);
  });

  it('persists across a restart: accounts, balances, cards and keys', async () => {
    const before = (await ok(call(gw, '/x-dna'))) as unknown as Json[];
    const c2 = await ok(
      call(gw, '/x-users', {
        key: betaKey,
        body: { Name: 'child-3', Email: 'child-3@example.com', CreditGranted: 30 },
      }),
    );
    const c3Key = user(c2)['SecretKey'] as string;
    const all = (await ok(call(gw, '/x-dna'))) as unknown as Json[];
    expect(all.length).toBe(before.length + 1);

    gw = await gw.restart();
    const after = (await ok(call(gw, '/x-dna'))) as unknown as Json[];
    const strip = (list: Json[]): Json[] =>
      list.map((u) => ({ ...u, DailyUsage: undefined, MonthlyUsage: undefined }));
    expect(strip(after)).toEqual(strip(all));
    expect(await ok(call(gw, '/x-users/child-3', { key: betaKey }))).toMatchObject([{ Balance: 30 }]);
    // The child's key still authenticates (its balance of 30 is above the $20 API minimum).
    expect(await ok(call(gw, '/x-users', { key: c3Key }))).toEqual([]);
    await expectLedgerMatchesBalances(gw);
  });
});
