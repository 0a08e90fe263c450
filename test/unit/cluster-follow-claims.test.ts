// One follower per open batch or background response when several instances share one PostgreSQL
// and one Redis: two (then three) "instances", each with its own writer (the delta sink, as in the
// cluster), registry, meter and follower, plus a real cluster heartbeat for liveness, against a
// mock upstream. The creator follows its work; nobody else does while it lives; when it dies one
// survivor claims its open follows, holds their reservations and settles each exactly once, even
// when the dead instance's writer flushes a settlement of its own; claims survive restarts.
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AccountRegistry } from '../../src/accounts/account-registry.js';
import type { Account } from '../../src/accounts/account.js';
import { AccountLoader } from '../../src/accounts/account-loader.js';
import { loadRoot } from '../../src/accounts/load-accounts.js';
import { RateLimiter } from '../../src/accounts/rate-limiter.js';
import { Calendar } from '../../src/billing/calendar.js';
import { Meter } from '../../src/billing/meter.js';
import { loadPriceTable } from '../../src/billing/price-table.js';
import { startCluster, type Cluster } from '../../src/cluster/cluster.js';
import { createFollowClaims } from '../../src/cluster/follow-claims.js';
import { RedisObjectDirectory } from '../../src/cluster/object-directory.js';
import { createKeyRepository } from '../../src/keys/key-repository.js';
import { KeyPool } from '../../src/keys/key-pool.js';
import { createSecrets } from '../../src/keys/secrets.js';
import { joinInstances, type InstanceHeartbeat } from '../../src/store/instances.js';
import { StateWriter } from '../../src/store/state-writer.js';
import type { Store } from '../../src/store/store.js';
import { Follower } from '../../src/tenancy/follower.js';
import { ObjectRegistry, type ObjectRecord } from '../../src/tenancy/object-registry.js';
import { createObjectRepository } from '../../src/tenancy/object-repository.js';
import { UpstreamClient } from '../../src/upstream/upstream-client.js';
import { uniquePrefix } from '../support/cluster-nodes.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { postgresBackend, storeBackends, type OpenedStore } from '../support/stores.js';

const hasPostgres = storeBackends().some((b) => b.name === 'postgres');
const silent = pino({ level: 'silent' });
const UPSTREAM_KEY = 'sk-upstream-follow-claims-0000000001';
const ALICE = 7;
const CREDIT = 50_000_000;
const RESERVE = 2_000_000;
const prices = loadPriceTable(new URL('../../config/prices.json', import.meta.url).pathname);
const secrets = createSecrets(Buffer.alloc(32, 7));

interface Node {
  readonly id: string;
  readonly row: InstanceHeartbeat;
  readonly cluster: Cluster;
  readonly writer: StateWriter;
  readonly objects: ObjectRegistry;
  readonly accounts: AccountRegistry;
  readonly meter: Meter;
  readonly pool: KeyPool;
  readonly upstream: UpstreamClient;
  readonly follower: Follower;
  alice(): Account;
  /** A graceful stop: deregisters from the heartbeat and deletes the instances row. */
  stop(): Promise<void>;
}

let server: RedisServer;
let mock: MockUpstream;
let opened: OpenedStore;
let store: Store;
let prefix: string;
let nodes: Node[] = [];

beforeAll(async () => {
  if (!hasPostgres) return;
  server = await startRedisServer();
  mock = await startMockUpstream({ organisations: { [UPSTREAM_KEY]: 'org-follow' } });
});
afterAll(async () => {
  await mock?.close();
  await server?.stop();
});

async function startNode(heartbeat = { intervalMs: 100, deadAfterMs: 5_000 }): Promise<Node> {
  const row = await joinInstances(store.instances!, 'test store', silent);
  const id = row.self.id;
  const late: { follower?: Follower } = {};
  const cluster = await startCluster({
    redis: { addr: server.addr, db: 0, keyPrefix: prefix, startupTimeoutMs: 3_000, maxBackoffMs: 100 },
    instanceId: id,
    reconcile: async () => {},
    // The wiring of the composition root: one survivor takes a dead instance's follows over.
    onInstanceDead: async (dead) => {
      await late.follower?.claimFrom(dead);
    },
    heartbeat,
  });
  const writer = new StateWriter(store.shared!.deltaSink(id), silent, {
    flushIntervalMs: 60_000,
    statsInterval: 1_000,
  });
  const objects = new ObjectRegistry(createObjectRepository(store.db), writer, {
    directory: new RedisObjectDirectory(cluster.redis),
  });
  const calendar = new Calendar('UTC');
  const registry = new AccountRegistry();
  await loadRoot(store.db, registry, calendar.periodOf(Date.now()));
  const accounts = new AccountLoader({
    db: store.db,
    registry,
    writer,
    period: () => calendar.periodOf(Date.now()),
  });
  await accounts.load([ALICE]);
  const meter = new Meter(prices, calendar, new RateLimiter(), writer, { maxOutputTokensCap: 1_000 });
  const pool = new KeyPool(
    createKeyRepository(store.db),
    secrets,
    { cooldownMs: 1_000, ejectAfter: 3, ejectBaseMs: 1_000, maxEjectMs: 8_000, probeIntervalMs: 60_000 },
    silent,
  );
  await pool.load();
  if (pool.size === 0) await pool.add(UPSTREAM_KEY);
  const upstream = new UpstreamClient(mock.url, '', {
    connectTimeoutMs: 2_000,
    idleTimeoutMs: 5_000,
    connections: 4,
  });
  const follower = new Follower({
    registry: objects,
    accounts,
    meter,
    prices,
    pool,
    upstream,
    retry: { maxAttempts: 1, deadlineMs: 5_000, attemptTimeoutMs: 5_000 },
    log: silent,
    intervalMs: 3_600_000,
    clock: Date.now,
    claims: createFollowClaims({
      db: store.db,
      instanceId: id,
      liveInstances: () => cluster.heartbeat.liveInstances(),
    }),
  });
  late.follower = follower;
  let stopped = false;
  const node: Node = {
    id,
    row,
    cluster,
    writer,
    objects,
    accounts: registry,
    meter,
    pool,
    upstream,
    follower,
    alice: () => registry.get(ALICE)!,
    async stop() {
      if (stopped) return;
      stopped = true;
      await follower.stop();
      await cluster.stop();
      await row.stop();
      await pool.close();
      await upstream.destroy();
    },
  };
  nodes.push(node);
  return node;
}

async function insertAlice(): Promise<void> {
  const at = Date.now();
  await store.db
    .insertInto('accounts')
    .values({
      id: ALICE,
      parent_id: null,
      name: 'alice',
      email: 'alice@example.com',
      name_key: 'alice',
      email_key: 'alice@example.com',
      alias: 'alice',
      billing_email: null,
      key_hash: 'hash-alice',
      partial_key: 'x',
      level: 0,
      rates: 1_000_000,
      rate_limit: 60,
      child_limit: 10,
      hard_limit: 1_000_000_000,
      soft_limit: 0,
      status: 1,
      is_root: 0,
      allow_ips: null,
      allow_models: null,
      allow_endpoints: null,
      credit_granted: CREDIT,
      credit_used: 0,
      requests: 0,
      soft_notice_month: null,
      created_at: at,
      updated_at: at,
    })
    .execute();
  await store.db
    .insertInto('credit_cards')
    .values({
      account_id: ALICE,
      amount: CREDIT,
      balance: CREDIT,
      granted_at: at,
      expires_at: at + 30 * 86_400_000,
      reference: null,
    })
    .execute();
}

/**
 * What the gateway does for a background response created through `node`: upstream creates it
 * (queued), then the answer's record: the object, the follow with the request's reservation, a
 * flush (durable before the client sees the id). Returns the record, its ticket and request id.
 */
async function createBackground(node: Node, requestId: string) {
  const key = node.pool.list()[0]!;
  const r = await fetch(`${mock.url}/v1/responses`, {
    method: 'POST',
    headers: { authorization: `Bearer ${UPSTREAM_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'gpt-4o-mini',
      input: 'slow work',
      background: true,
      max_output_tokens: 100,
    }),
  });
  const body = (await r.json()) as { id: string; status: string };
  expect(body.status).toBe('queued');
  const rec: ObjectRecord = {
    id: body.id,
    kind: 'response',
    accountId: ALICE,
    keyId: key.id,
    keyGroup: key.group,
    createdAt: Date.now(),
    tag: null,
    deletedAt: null,
    follow: null,
  };
  node.objects.add(rec);
  const reserved = node.meter.reserve(node.alice(), {
    requestId,
    path: '/v1/responses',
    model: 'gpt-4o-mini',
    price: prices.lookup('gpt-4o-mini'),
    reserve: RESERVE,
  });
  if (!reserved.ok) throw reserved.error;
  node.follower.track(rec, reserved.ticket);
  await node.writer.flush();
  return { rec, ticket: reserved.ticket, requestId };
}

async function row(id: string) {
  return store.db.selectFrom('objects').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
}

async function usageOf(requestId: string) {
  return store.db.selectFrom('usage_records').selectAll().where('request_id', '=', requestId).execute();
}

async function money() {
  const a = await store.db
    .selectFrom('accounts')
    .select(['credit_used', 'requests'])
    .where('id', '=', ALICE)
    .executeTakeFirstOrThrow();
  const cards = await store.db
    .selectFrom('credit_cards')
    .select('balance')
    .where('account_id', '=', ALICE)
    .execute();
  return {
    creditUsed: Number(a.credit_used),
    balance: cards.reduce((s, c) => s + Number(c.balance), 0),
  };
}

/** Upstream reads of `id` (the follower's polls). */
const polls = (id: string) => mock.requests.filter((r) => r.method === 'GET' && r.path.includes(id)).length;

describe.runIf(hasPostgres)('follow claims over PostgreSQL and Redis', () => {
  beforeEach(async () => {
    opened = await postgresBackend.open();
    store = opened.store;
    prefix = uniquePrefix();
    mock.reset();
    await insertAlice();
  });
  afterEach(async () => {
    for (const n of nodes.reverse()) await n.stop();
    nodes = [];
    await opened.dispose();
  });

  it('lets only the creator follow its work while it lives', async () => {
    const a = await startNode();
    const b = await startNode();
    await b.follower.resume();
    const { rec } = await createBackground(a, 'req-live');
    expect(await row(rec.id)).toMatchObject({ follow: 'open', follow_owner: a.id, reserved: RESERVE });
    // B starting now, or sweeping for abandoned work, takes nothing of A's.
    const c = await startNode();
    await c.follower.resume();
    expect(await b.follower.claimAbandoned()).toBe(0);
    expect([a.follower.size, b.follower.size, c.follower.size]).toEqual([1, 0, 0]);
    expect([a.alice().reserved, b.alice().reserved, c.alice().reserved]).toEqual([RESERVE, 0, 0]);
    await b.follower.pollOnce();
    await c.follower.pollOnce();
    expect(polls(rec.id)).toBe(0);
    // A follows and settles it.
    mock.advance();
    await a.follower.pollOnce();
    expect(polls(rec.id)).toBe(1);
    await a.writer.flush();
    expect(await usageOf('req-live')).toHaveLength(1);
    expect(await row(rec.id)).toMatchObject({ follow: 'done', follow_owner: a.id });
    expect(a.alice().reserved).toBe(0);
  });

  it('after A dies, B claims its open follows, holds their reservations and settles each once, even when A settles too', async () => {
    const a = await startNode();
    const b = await startNode();
    const one = await createBackground(a, 'req-one');
    const two = await createBackground(a, 'req-two');
    const before = await money();
    // The heartbeat's death handler, on the one survivor it chose.
    expect(await b.follower.claimFrom(a.id)).toBe(2);
    expect(b.follower.size).toBe(2);
    expect(b.alice().reserved).toBe(2 * RESERVE);
    expect(await row(one.rec.id)).toMatchObject({ follow: 'open', follow_owner: b.id });
    // Another survivor handling the same death (a retried handler) gets nothing.
    const c = await startNode();
    expect(await c.follower.claimFrom(a.id)).toBe(0);
    expect(await b.follower.claimFrom(a.id)).toBe(0);
    expect(b.alice().reserved).toBe(2 * RESERVE);

    mock.advance();
    // A did not know yet: it settled the first one in the same instant (queued, not written).
    const late = a.meter.settle(one.ticket, {
      kind: 'done',
      status: 200,
      outcome: 'completed',
      parts: [
        {
          model: 'gpt-4o-mini',
          price: prices.lookup('gpt-4o-mini')!,
          usage: { promptTokens: 1_000, cachedTokens: 0, completionTokens: 1_000 },
        },
      ],
      attempts: 1,
    });
    a.objects.setFollow(one.rec, { state: 'done' });
    expect(late).toBeGreaterThan(0);
    await b.follower.pollOnce();
    await b.writer.flush();
    expect(b.follower.size).toBe(0);
    expect(b.alice().reserved).toBe(0);
    const billed = (await usageOf('req-one'))[0]!;
    expect(Number(billed.cost)).toBeGreaterThan(0);
    // A's writer flushes its own settlement afterwards: nothing is billed twice.
    await a.writer.flush();
    expect(await usageOf('req-one')).toHaveLength(1);
    expect(await usageOf('req-two')).toHaveLength(1);
    const cost = Number(billed.cost) + Number((await usageOf('req-two'))[0]!.cost);
    expect(await money()).toEqual({ creditUsed: before.creditUsed + cost, balance: before.balance - cost });
    expect(await row(one.rec.id)).toMatchObject({ follow: 'done', follow_owner: b.id });
    expect(await row(two.rec.id)).toMatchObject({ follow: 'done', follow_owner: b.id });
    // A (alive after all) lets go of what it no longer owns, without a charge of its own.
    await a.follower.pollOnce();
    expect(a.follower.size).toBe(0);
    expect(a.alice().reserved).toBe(0);
    expect(await usageOf('req-two')).toHaveLength(1);
  });

  it("takes a crashed instance's follows over through the heartbeat's death handler", async () => {
    const fast = { intervalMs: 50, deadAfterMs: 300 };
    const a = await startNode(fast);
    const b = await startNode(fast);
    const { rec } = await createBackground(a, 'req-crash');
    // A crash as the others see it: A's link to Redis is gone, with no goodbye.
    await a.cluster.redis.close();
    const started = Date.now();
    while (b.follower.size === 0) {
      if (Date.now() - started > 5_000) throw new Error('B never took the follow over');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(b.alice().reserved).toBe(RESERVE);
    expect(await row(rec.id)).toMatchObject({ follow: 'open', follow_owner: b.id });
    mock.advance();
    await b.follower.pollOnce();
    await b.writer.flush();
    expect(await usageOf('req-crash')).toHaveLength(1);
    expect(b.alice().reserved).toBe(0);
  });

  it('has a live instance that lost its follows let them go before settling', async () => {
    const a = await startNode();
    const b = await startNode();
    const { rec } = await createBackground(a, 'req-lost');
    expect(await b.follower.claimFrom(a.id)).toBe(1);
    mock.advance();
    // A's round would settle it (upstream is done); it sees the new owner first.
    await a.follower.pollOnce();
    expect(a.follower.size).toBe(0);
    expect(a.alice().reserved).toBe(0);
    await a.writer.flush();
    expect(await usageOf('req-lost')).toHaveLength(0);
    await b.follower.pollOnce();
    await b.writer.flush();
    expect(await usageOf('req-lost')).toHaveLength(1);
    expect(await row(rec.id)).toMatchObject({ follow: 'done', follow_owner: b.id });
  });

  it('keeps claims across restarts: a new instance takes only what no live instance holds', async () => {
    const a = await startNode();
    const b = await startNode();
    const { rec } = await createBackground(a, 'req-restart');
    expect(await b.follower.claimFrom(a.id)).toBe(1);
    await a.stop();
    // A restarts (a new instance id) while B lives: B keeps the claim.
    const a2 = await startNode();
    await a2.follower.resume();
    expect(a2.follower.size).toBe(0);
    expect(await row(rec.id)).toMatchObject({ follow_owner: b.id });
    // B stops (deregisters, deletes its row): the next start-up takes its open follows over.
    await b.stop();
    const c = await startNode();
    await c.follower.resume();
    expect(c.follower.size).toBe(1);
    expect(c.alice().reserved).toBe(RESERVE);
    expect(await row(rec.id)).toMatchObject({ follow: 'open', follow_owner: c.id });
    // …and a2, sweeping at the same time, gets nothing.
    expect(await a2.follower.claimAbandoned()).toBe(0);
    mock.advance();
    await c.follower.pollOnce();
    await c.writer.flush();
    expect(await usageOf('req-restart')).toHaveLength(1);
    expect(await row(rec.id)).toMatchObject({ follow: 'done', follow_owner: c.id });
  });

  it('claims open follows written by a single instance before the cluster (no owner)', async () => {
    const a = await startNode();
    const { rec } = await createBackground(a, 'req-solo');
    // As a single instance (or an older version) would have left it.
    await store.db.updateTable('objects').set({ follow_owner: null }).where('id', '=', rec.id).execute();
    const b = await startNode();
    await b.follower.resume();
    expect(b.follower.size).toBe(1);
    expect(await row(rec.id)).toMatchObject({ follow_owner: b.id });
    // A's writes never take it back (the owner changes only through a claim).
    a.objects.setFollow(rec, rec.follow);
    await a.writer.flush();
    expect(await row(rec.id)).toMatchObject({ follow_owner: b.id });
  });
});
