// Several gateways in one process over one PostgreSQL schema and one private Redis: the money
// rules of one process hold over all of them (leases), account changes are in effect everywhere
// before the call returns, and limits count over every instance. (The child-process test with
// kill -9 is test/e2e/cluster-processes.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { liveBalance } from '../../src/accounts/cards.js';
import { createChild } from '../support/accounts.js';
import { call, startGateway, TEST_STORE, type TestGateway } from '../support/gateway.js';
import { attachMockRealtime, openRealtime, type MockRealtime } from '../support/mock-realtime.js';
import { startMockUpstream, waitFor, type MockUpstream } from '../support/mock-upstream.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { createTestDatabase, postgresTestRun, type TestDatabase } from '../support/test-databases.js';

// Once per run (the sqlite project), and only with a PostgreSQL server.
const enabled = TEST_STORE === 'sqlite' && postgresTestRun() !== undefined;
const K = 'sk-upstream-cluster-money-0000001';

let mock: MockUpstream;
let rt: MockRealtime;
let redis: RedisServer;
let db: TestDatabase;
let gws: TestGateway[] = [];

const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'hello there' }] };

async function spend(gw: TestGateway, key: string, body: unknown = chat): Promise<number> {
  const r = await call(gw, '/v1/chat/completions', { key, body });
  await r.arrayBuffer();
  return r.status;
}

/** The account as the store has it, after every instance wrote what it settled. */
async function stored(name: string) {
  for (const g of gws) await g.app.writer.flush();
  const store = gws[0]!.app.store.db;
  const a = await store.selectFrom('accounts').selectAll().where('name', '=', name).executeTakeFirstOrThrow();
  const cards = await store.selectFrom('credit_cards').selectAll().where('account_id', '=', a.id).execute();
  const ledger = await store.selectFrom('ledger').select('amount').where('account_id', '=', a.id).execute();
  const usage = await store
    .selectFrom('usage_records')
    .select('request_id')
    .where('account_id', '=', a.id)
    // One row per admitted request (requests refused at the gates are logged apart).
    .where('usage_source', '<>', 'gate')
    .execute();
  const balance = liveBalance(
    cards.map((c) => ({
      amount: Number(c.amount),
      balance: Number(c.balance),
      grantedAt: Number(c.granted_at),
      expiresAt: Number(c.expires_at),
    })),
    Date.now(),
  );
  return {
    id: a.id,
    balance,
    creditUsed: Number(a.credit_used),
    leased: Number(a.leased),
    ledger: ledger.reduce((s, l) => s + Number(l.amount), 0),
    usageRows: usage.length,
    requests: Number(a.requests),
  };
}

describe.runIf(enabled)('three gateways over one PostgreSQL and one Redis', () => {
  beforeAll(async () => {
    mock = await startMockUpstream();
    rt = attachMockRealtime(mock);
    redis = await startRedisServer();
    db = await createTestDatabase();
    // One master key for all: each instance must decrypt the upstream keys the others stored.
    const env = {
      OPENAI_API_BASE: mock.url,
      INIT_KEYS: K,
      REDIS_ADDR: redis.addr,
      FLUSH_INTERVAL_MS: '50',
      MASTER_KEY: 'c1'.repeat(32),
    };
    gws = await Promise.all([0, 1, 2].map(() => startGateway(env, { database: db })));
  });
  afterAll(async () => {
    for (const g of gws) await g.stop();
    await redis?.stop();
    rt?.close();
    await mock?.close();
  });

  it('has one root and one identity: an account made on one instance serves on the others at once', async () => {
    const roots = await gws[0]!.app.store.db
      .selectFrom('accounts')
      .select('id')
      .where('is_root', '=', 1)
      .execute();
    expect(roots).toHaveLength(1);
    const key = await createChild(gws[0]!, 'everywhere', 10);
    // Right after the 200: the other instances know the key.
    expect(await spend(gws[1]!, key)).toBe(200);
    expect(await spend(gws[2]!, key)).toBe(200);
    // Disabled through one instance: refused by the others right after the answer.
    expect(
      (await call(gws[2]!, '/x-users/everywhere', { method: 'PUT', body: { Status: false } })).status,
    ).toBe(200);
    expect(await spend(gws[0]!, key)).toBe(401);
    expect(await spend(gws[1]!, key)).toBe(401);
    expect(
      (await call(gws[1]!, '/x-users/everywhere', { method: 'PUT', body: { Status: true } })).status,
    ).toBe(200);
    expect(await spend(gws[0]!, key)).toBe(200);
    // Deleted through one: gone everywhere.
    expect((await call(gws[0]!, '/x-users/everywhere', { method: 'DELETE' })).status).toBe(200);
    for (const g of gws) expect(await spend(g, key)).toBe(401);
  });

  it('applies model ACLs and Rates changed through one instance on the others before the call returns', async () => {
    const key = await createChild(gws[0]!, 'tuned', 10);
    const lastCost = async (): Promise<number> => {
      for (const g of gws) await g.app.writer.flush();
      const row = await gws[0]!.app.store.db
        .selectFrom('usage_records')
        .innerJoin('accounts', 'accounts.id', 'usage_records.account_id')
        .select('usage_records.cost')
        .where('accounts.name', '=', 'tuned')
        .orderBy('usage_records.created_at', 'desc')
        .executeTakeFirstOrThrow();
      return Number(row.cost);
    };
    const long = { ...chat, messages: [{ role: 'user' as const, content: 'word '.repeat(2_000) }] };
    expect(await spend(gws[1]!, key, long)).toBe(200);
    const plain = await lastCost();
    expect(plain).toBeGreaterThan(100);
    expect((await call(gws[0]!, '/x-users/tuned', { method: 'PUT', body: { Rates: 3 } })).status).toBe(200);
    expect(await spend(gws[2]!, key, long)).toBe(200);
    expect(Math.abs((await lastCost()) - 3 * plain)).toBeLessThanOrEqual(2);
    const acl = await call(gws[1]!, '/x-users/tuned', { method: 'PUT', body: { AllowModels: ['gpt-4o'] } });
    expect(acl.status).toBe(200);
    for (const g of [gws[0]!, gws[2]!]) {
      const r = await call(g, '/v1/chat/completions', { key, body: chat });
      expect(r.status).toBe(403);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('model_not_allowed');
    }
  });

  it('never overspends: a storm over three instances ends with the books exact', async () => {
    const key = await createChild(gws[1]!, 'stormy', 2);
    // gpt-4o-mini with a large max_tokens: each request reserves ~$0.3, costs a few micro-dollars.
    const body = { ...chat, max_tokens: 500_000 };
    const statuses = await Promise.all(Array.from({ length: 90 }, (_, i) => spend(gws[i % 3]!, key, body)));
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(0);
    expect(statuses.every((s) => s === 200 || s === 402)).toBe(true);
    const s = await stored('stormy');
    expect(s.balance).toBeGreaterThanOrEqual(0);
    expect(s.creditUsed + s.balance).toBe(2_000_000);
    expect(s.ledger).toBe(s.balance);
    expect(s.usageRows).toBe(s.requests);
    // Every instance answers the same balance.
    const seen = new Set<number>();
    for (const g of gws) {
      const r = await call(g, '/x-users/stormy');
      seen.add(((await r.json()) as [{ Balance: number }])[0].Balance);
    }
    expect(seen).toEqual(new Set([s.balance / 1_000_000]));
  });

  it('deducts the whole balance while other instances hold leases on it, exactly', async () => {
    const key = await createChild(gws[0]!, 'leasedout', 5);
    for (const g of gws) expect(await spend(g, key)).toBe(200);
    const before = await stored('leasedout');
    expect(before.leased).toBeGreaterThan(0);
    const r = await call(gws[2]!, '/x-users/leasedout', {
      method: 'PUT',
      body: { CreditGranted: -(before.balance / 1_000_000) },
    });
    expect(r.status).toBe(200);
    const after = await stored('leasedout');
    expect(after.balance).toBe(0);
    expect(after.leased).toBe(0);
    for (const g of gws) expect(await spend(g, key)).toBe(402);
  });

  it('deletes an account while other instances hold its leases and a request in flight, exactly', async () => {
    const elderKey = await createChild(gws[0]!, 'elder', 40);
    const doomedKey = await createChild(gws[0]!, 'doomed', 5, {}, elderKey);
    for (const g of gws) expect(await spend(g, doomedKey)).toBe(200);
    const elderBefore = await stored('elder');
    // A slow stream through one instance holds a reservation while another deletes the account.
    mock.setStream({ chunks: 20, intervalMs: 50 });
    const inflight = call(gws[1]!, '/v1/chat/completions', {
      key: doomedKey,
      body: { ...chat, stream: true },
    }).then(async (r) => ({ status: r.status, text: await r.text() }));
    await new Promise((r) => setTimeout(r, 250));
    // Refused while the request is in flight, as one process refuses it (its settlement would
    // touch a deleted account); the answer under way is finished and billed.
    const early = await call(gws[2]!, '/x-users/doomed', { method: 'DELETE', key: elderKey });
    expect(early.status).toBe(409);
    expect(((await early.json()) as { error: { code: string } }).error.code).toBe('conflict');
    const done = await inflight;
    mock.setStream({ chunks: 5, intervalMs: 0 });
    expect(done.status).toBe(200);
    expect(done.text).toContain('[DONE]');
    const doomedBefore = await stored('doomed');
    expect(doomedBefore.requests).toBe(4);
    expect(doomedBefore.leased).toBeGreaterThan(0);
    // Deleted through one instance while the others still hold leases on it: gone everywhere.
    const del = await call(gws[2]!, '/x-users/doomed', { method: 'DELETE', key: elderKey });
    expect(del.status, await del.text()).toBe(200);
    for (const g of gws) expect(await spend(g, doomedKey)).toBe(401);
    // Its whole balance at the deletion (leased parts included) went back to the parent, less the
    // $0.20 fee; nothing of it is left anywhere, and no lease outlives it.
    const elder = await stored('elder');
    expect(elder.balance).toBe(elderBefore.balance + doomedBefore.balance - 200_000);
    expect(elder.ledger).toBe(elder.balance);
    const db = gws[0]!.app.store.db;
    expect(await db.selectFrom('accounts').select('id').where('name', '=', 'doomed').execute()).toEqual([]);
    for (const table of ['credit_cards', 'leases'] as const) {
      const rows = await db
        .selectFrom(table)
        .select('account_id')
        .where('account_id', '=', doomedBefore.id)
        .execute();
      expect(rows, table).toEqual([]);
    }
  });

  it('bills realtime sessions on every instance from its leases, exactly', async () => {
    const key = await createChild(gws[0]!, 'talker', 10);
    // TEXT_USAGE at gpt-realtime prices: 688 text + 512 cached in, 40 out, rounded up once.
    const perResponse = Math.ceil((688 * 4_000_000 + 512 * 400_000 + 40 * 16_000_000) / 1_000_000);
    for (const g of gws) {
      const session = await openRealtime(g.url, { key });
      for (let i = 0; i < 2; i++) {
        session.send({ type: 'response.create' });
        await session.next('response.done', i);
      }
      session.socket.close();
      await session.closed;
    }
    // A response whose worst case is larger than the instance's lease: it asks for more, then runs.
    const big = await openRealtime(gws[1]!.url, { key });
    big.send({
      type: 'conversation.item.create',
      item: {
        type: 'message',
        role: 'user',
        content: [{ type: 'input_text', text: 'long '.repeat(60_000) }],
      },
    });
    big.send({ type: 'response.create' });
    const done = await big.next('response.done');
    expect(done['response']).toMatchObject({ status: 'completed' });
    big.socket.close();
    await big.closed;
    await waitFor(() => gws.every((g) => g.app.realtime.stats().sessions === 0));
    const s = await stored('talker');
    expect(s.creditUsed).toBe(7 * perResponse);
    expect(s.creditUsed + s.balance).toBe(10_000_000);
    expect(s.ledger).toBe(s.balance);
    expect(s.usageRows).toBe(s.requests);
  });

  it('admits a burst of a rich account with a finite RateLimit without a balance refusal', async () => {
    // The RPM check waits for Redis while the burst reserves what was leased: lease more, not 402.
    const key = await createChild(gws[0]!, 'bursty', 1000);
    expect(
      (await call(gws[0]!, '/x-users/bursty', { method: 'PUT', body: { RateLimit: 999_999 } })).status,
    ).toBe(200);
    const body = { ...chat, max_tokens: 200_000 };
    const statuses: number[] = [];
    await Promise.all(
      Array.from({ length: 64 }, async (_, w) => {
        for (let i = 0; i < 5; i++) statuses.push(await spend(gws[w % 3]!, key, body));
      }),
    );
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    const s = await stored('bursty');
    expect(s.creditUsed + s.balance).toBe(1000_000_000);
    expect(s.usageRows).toBe(320);
  });

  it('lists in the request log of any instance the requests every instance served and refused', async () => {
    const key = await createChild(gws[0]!, 'logged', 5);
    const acl = await call(gws[1]!, '/x-users/logged', {
      method: 'PUT',
      body: { AllowModels: ['gpt-4o-mini'] },
    });
    expect(acl.status).toBe(200);
    const ids: string[] = [];
    for (const g of gws) {
      const r = await call(g, '/v1/chat/completions', { key, body: chat });
      await r.arrayBuffer();
      ids.push(r.headers.get('x-request-id') ?? '');
    }
    const refused = await call(gws[2]!, '/v1/chat/completions', { key, body: { ...chat, model: 'gpt-4o' } });
    expect(refused.status).toBe(403);
    for (const g of gws) await g.app.writer.flush();
    for (const g of gws) {
      const rows = (await (await call(g, '/x-logs', { key })).json()) as Array<{
        request_id: string;
        outcome: string;
      }>;
      expect(rows.filter((r) => r.outcome === 'completed').map((r) => r.request_id)).toEqual(
        [...ids].reverse(),
      );
      expect(rows.filter((r) => r.outcome === 'refused')).toHaveLength(1);
    }
  });

  it('counts RateLimit over all instances', async () => {
    const key = await createChild(gws[0]!, 'limited', 10);
    expect((await call(gws[0]!, '/x-users/limited', { method: 'PUT', body: { RateLimit: 6 } })).status).toBe(
      200,
    );
    const statuses = await Promise.all(Array.from({ length: 18 }, (_, i) => spend(gws[i % 3]!, key)));
    expect(statuses.filter((s) => s === 200)).toHaveLength(6);
    expect(statuses.filter((s) => s === 429)).toHaveLength(12);
  });

  it('shares one key pool: added, disabled and retired keys are in effect on every instance', async () => {
    const K2 = 'sk-upstream-cluster-money-0000002';
    const K3 = 'sk-upstream-cluster-money-0000003';
    const key = await createChild(gws[0]!, 'keyed', 10);
    const keysOf = async (g: TestGateway) =>
      (await (await call(g, '/x-keys')).json()) as Array<{ ID: number; Key: string; Status: string }>;
    // Added through one instance: served by another right after the 200.
    const started = Date.now();
    expect((await call(gws[0]!, '/x-keys', { body: { SecretKey: K2 }, raw: true })).status).toBe(200);
    const first = (await keysOf(gws[0]!)).find((k) => k.Key.endsWith(K.slice(-4)))!;
    expect(
      (await call(gws[1]!, `/x-keys/${first.ID}`, { method: 'PUT', body: { Status: false } })).status,
    ).toBe(200);
    expect(Date.now() - started).toBeLessThan(1_000);
    mock.reset();
    for (let i = 0; i < 6; i++) expect(await spend(gws[i % 3]!, key)).toBe(200);
    expect(new Set(mock.requests.map((r) => r.key))).toEqual(new Set([K2]));
    // Upstream says K3 is invalid: each instance sends it at most once, then it is retired everywhere.
    expect((await call(gws[2]!, '/x-keys', { body: { SecretKey: K3 }, raw: true })).status).toBe(200);
    mock.reset();
    mock.setKey(K3, { kind: 'invalid-key' });
    for (let i = 0; i < 18; i++) expect(await spend(gws[i % 3]!, key)).toBe(200);
    expect(mock.requests.filter((r) => r.key === K3).length).toBeGreaterThanOrEqual(1);
    expect(mock.requests.filter((r) => r.key === K3).length).toBeLessThanOrEqual(3);
    for (const g of gws) {
      const k3 = (await keysOf(g)).find((k) => k.Key.endsWith(K3.slice(-4)));
      expect(k3?.Status).toBe('disabled');
    }
    // A 429 cooling seen by one instance is honoured by the others.
    mock.reset();
    mock.setKey(K2, { kind: 'rate-limited', retryAfterSec: 60 });
    expect(
      (await call(gws[1]!, `/x-keys/${first.ID}`, { method: 'PUT', body: { Status: true } })).status,
    ).toBe(200);
    for (let i = 0; i < 4; i++) await spend(gws[0]!, key);
    expect(mock.requests.some((r) => r.key === K2)).toBe(true);
    const cooled = Date.now();
    for (;;) {
      const views = await Promise.all(
        gws.map(async (g) => (await keysOf(g)).find((k) => k.Key.endsWith(K2.slice(-4)))),
      );
      if (views.every((v) => v?.Status === 'cooling')) break;
      expect(Date.now() - cooled).toBeLessThan(1_000);
      await new Promise((r) => setTimeout(r, 20));
    }
    mock.reset();
    for (let i = 0; i < 6; i++) expect(await spend(gws[1 + (i % 2)]!, key)).toBe(200);
    expect(mock.requests.every((r) => r.key === K)).toBe(true);
  });
});
