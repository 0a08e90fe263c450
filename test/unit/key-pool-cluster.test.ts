// One key pool over several instances: KeyPools over one real PostgreSQL database (each with its
// own connection pool), change notices over a private redis-server, wired as the composition root
// wires them (announce → publishAndWait on topic `key`; `key` notices → reloadKey; reconcile of
// topic `key` → reloadKeys). Admin changes and key health reach every instance before the call
// that made them returns; a missed notice and a Redis restart are made good by reconciliation.
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createKeyRepository } from '../../src/keys/key-repository.js';
import { KeyPool, type PoolKey } from '../../src/keys/key-pool.js';
import { createSecrets } from '../../src/keys/secrets.js';
import { openStore, type Store } from '../../src/store/store.js';
import type { UpstreamOutcome } from '../../src/upstream/classify-outcome.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { sleep, startNode, uniquePrefix, waitUntil, type TestNode } from '../support/cluster-nodes.js';
import { postgresBackend, storeBackends, type OpenedStore } from '../support/stores.js';

const hasPostgres = storeBackends().some((b) => b.name === 'postgres');
const secrets = createSecrets(Buffer.alloc(32, 9));
const policy = {
  cooldownMs: 20_000,
  ejectAfter: 3,
  ejectBaseMs: 10_000,
  maxEjectMs: 300_000,
  probeIntervalMs: 3_600_000,
};
const clock = { t: Date.now() };
const secret = (n: number): string => `sk-shared-pool-${String(n).padStart(20, '0')}`;
const ok: UpstreamOutcome = { kind: 'ok' };
const invalid: UpstreamOutcome = { kind: 'key-invalid', reason: 'invalid_api_key' };

interface Instance {
  readonly node: TestNode;
  readonly store: Store;
  readonly pool: KeyPool;
  readonly logs: Array<{ level: number; msg: string }>;
  /** Detaches the `key` notice handler (notices then go unheard, as through a lost link). */
  readonly deafen: () => void;
}

let redis: RedisServer;
let opened: OpenedStore;
let instances: Instance[] = [];

async function startInstance(addr: string, prefix: string): Promise<Instance> {
  const logs: Instance['logs'] = [];
  const log = pino(
    { level: 'info' },
    {
      write: (line: string) => {
        const { level, msg } = JSON.parse(line) as { level: number; msg: string };
        logs.push({ level, msg });
      },
    },
  );
  const store = await openStore(opened.choice, pino({ level: 'silent' }));
  // The reconcile hook needs the pool, the pool's announcer needs the node: a late binding.
  const late: { pool?: KeyPool } = {};
  const node = await startNode(addr, prefix, {
    onReconcile: async (topic) => {
      if (topic === 'key') await late.pool?.reloadKeys();
    },
  });
  const pool = new KeyPool(createKeyRepository(store.db), secrets, policy, log, () => clock.t, {
    announce: async (id) => {
      const r = await node.broadcast.publishAndWait({ topic: 'key', id }, { timeoutMs: 3_000 });
      if (r.kind !== 'confirmed') log.warn({ missing: r }, 'some instances did not confirm a change in time');
    },
    announceRetryMs: 100,
  });
  late.pool = pool;
  const deafen = node.broadcast.on('key', (n) => pool.reloadKey(n.id));
  await pool.load();
  const instance: Instance = { node, store, pool, logs, deafen };
  instances.push(instance);
  return instance;
}

async function startInstances(count: number, addr = redis.addr): Promise<Instance[]> {
  const prefix = uniquePrefix();
  const started: Instance[] = [];
  for (let i = 0; i < count; i++) started.push(await startInstance(addr, prefix));
  await waitUntil(
    'all registered',
    async () => (await started[0]!.node.heartbeat.liveInstances()).length === count,
  );
  return started;
}

/** The ids `pick` hands out over `n` calls (each call a new request). */
function picked(pool: KeyPool, n = 30): Set<number> {
  const out = new Set<number>();
  for (let i = 0; i < n; i++) {
    const k = pool.pick(new Set());
    if (k !== undefined) out.add(k.id);
  }
  return out;
}

/** The pool's own key object for `id` (what a request would hold). */
function hold(pool: KeyPool, id: number): PoolKey {
  for (let i = 0; i < pool.size; i++) {
    const k = pool.pick(new Set());
    if (k?.id === id) return k;
  }
  throw new Error(`key ${id} is not selectable`);
}

/**
 * One request against a fake upstream on which the keys in `bad` are invalid: up to 3 attempts on
 * different keys, as the retry loop does. Counts each attempt that reached upstream with a bad key.
 */
async function request(pool: KeyPool, bad: ReadonlySet<number>, uses: { n: number }): Promise<void> {
  const tried = new Set<number>();
  for (let attempt = 0; attempt < 3; attempt++) {
    const key = pool.pick(tried);
    if (key === undefined) return;
    await sleep(1);
    if (!bad.has(key.id)) {
      pool.report(key, ok);
      return;
    }
    uses.n++;
    pool.report(key, invalid, '401 key-invalid');
    tried.add(key.id);
  }
}

const errorsOf = (i: Instance) => i.logs.filter((l) => l.level >= 50).map((l) => l.msg);

describe.runIf(hasPostgres)('one key pool over several instances (PostgreSQL + Redis)', () => {
  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis?.stop();
  });
  beforeEach(async () => {
    opened = await postgresBackend.open();
  });
  afterEach(async () => {
    for (const i of instances) {
      await i.pool.close();
      await i.node.stop();
      await i.store.close();
    }
    expect(instances.flatMap(errorsOf)).toEqual([]);
    instances = [];
    await opened.dispose();
  });

  it('a key added on A serves on B and C when A answers, well within 1 s', async () => {
    const [a, b, c] = await startInstances(3);
    await a!.pool.add(secret(1));
    const started = Date.now();
    const added = await a!.pool.add(secret(2), 'org-a');
    const elapsed = Date.now() - started;
    expect(added.ok).toBe(true);
    expect(elapsed).toBeLessThan(1_000);
    for (const i of [b!, c!]) {
      expect(picked(i.pool)).toEqual(new Set([1, 2]));
      expect(i.pool.get(2)).toMatchObject({ status: 'active', group: 'org-a' });
    }
  });

  it('a key disabled on A stops serving on B at once; enabled or regrouped, B follows', async () => {
    const [a, b] = await startInstances(2);
    await a!.pool.add(secret(1));
    await a!.pool.add(secret(2));
    const held = hold(b!.pool, 1);
    await a!.pool.setEnabled(1, false);
    expect(picked(b!.pool)).toEqual(new Set([2]));
    expect(b!.pool.get(1)).toMatchObject({ status: 'disabled', reason: 'disabled by admin' });
    // A request B had in flight on it ends well: the key stays disabled.
    b!.pool.report(held, ok);
    expect(b!.pool.get(1)?.status).toBe('disabled');
    await a!.pool.update(1, { enabled: true, group: 'org-b' });
    expect(picked(b!.pool)).toEqual(new Set([1, 2]));
    expect(hold(b!.pool, 1)).toBe(held);
    expect(b!.pool.pickPinned({ pins: [{ keyId: 99, group: 'org-b' }] }, new Set())?.id).toBe(1);
  });

  it('a 401 on A retires the key on B and C before they ever send it', async () => {
    const [a, b, c] = await startInstances(3);
    for (let n = 1; n <= 3; n++) await a!.pool.add(secret(n));
    const bad = new Set([2]);
    const onA = { n: 0 };
    while (onA.n === 0) await request(a!.pool, bad, onA);
    // A's report is written and announced in the background; settled = every instance applied it.
    await a!.pool.settled();
    for (const i of [b!, c!]) {
      expect(i.pool.get(2)).toMatchObject({ status: 'disabled', reason: 'invalid_api_key' });
      const uses = { n: 0 };
      for (let r = 0; r < 30; r++) await request(i.pool, bad, uses);
      expect(uses.n).toBe(0);
    }
    const row = await opened.store.db
      .selectFrom('upstream_keys')
      .select(['status', 'reason'])
      .where('id', '=', 2)
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ status: 'disabled', reason: 'invalid_api_key' });
  });

  it('with three instances sending at once, upstream sees an invalid key at most once per instance', async () => {
    const all = await startInstances(3);
    for (let n = 1; n <= 4; n++) await all[0]!.pool.add(secret(n));
    const bad = new Set([3]);
    const uses = all.map(() => ({ n: 0 }));
    await Promise.all(
      all.map(async (i, at) => {
        for (let r = 0; r < 40; r++) await request(i.pool, bad, uses[at]!);
      }),
    );
    await Promise.all(all.map((i) => i.pool.settled()));
    expect(uses.map((u) => u.n <= 1)).toEqual([true, true, true]);
    expect(uses.reduce((s, u) => s + u.n, 0)).toBeGreaterThanOrEqual(1);
    for (const i of all) expect(i.pool.get(3)?.status).toBe('disabled');
  });

  it('a 429 cooling on A is honoured by B until its time; a key out of quota is parked on B', async () => {
    const [a, b] = await startInstances(2);
    for (let n = 1; n <= 3; n++) await a!.pool.add(secret(n));
    const coolUntil = clock.t + 30_000;
    a!.pool.report(hold(a!.pool, 1), {
      kind: 'rate-limited',
      reason: 'rate_limit_exceeded',
      retryAfterMs: 30_000,
    });
    a!.pool.report(hold(a!.pool, 2), { kind: 'key-quota', reason: 'insufficient_quota' });
    await a!.pool.settled();
    expect(b!.pool.get(1)).toMatchObject({ status: 'cooling', until: coolUntil });
    expect(b!.pool.get(2)).toMatchObject({ status: 'parked', reason: 'insufficient_quota' });
    expect(picked(b!.pool)).toEqual(new Set([3]));
    const saved = clock.t;
    try {
      clock.t = coolUntil;
      expect(picked(b!.pool)).toEqual(new Set([1, 3]));
    } finally {
      clock.t = saved;
    }
  });

  it('a key deleted on A is gone on B; a request B holds on it finishes without writing', async () => {
    const [a, b] = await startInstances(2);
    await a!.pool.add(secret(1));
    await a!.pool.add(secret(2));
    const held = hold(b!.pool, 2);
    expect(await a!.pool.remove(2)).toBe(true);
    expect(b!.pool.get(2)).toBeUndefined();
    expect(b!.pool.size).toBe(1);
    expect(picked(b!.pool)).toEqual(new Set([1]));
    b!.pool.report(held, invalid);
    await b!.pool.settled();
    await b!.pool.flushCounters();
    expect(await opened.store.db.selectFrom('upstream_keys').select('id').execute()).toEqual([{ id: 1 }]);
  });

  it('counters from every instance add up in the store, as deltas', async () => {
    const [a, b] = await startInstances(2);
    await a!.pool.add(secret(1));
    for (let r = 0; r < 7; r++) a!.pool.report(hold(a!.pool, 1), ok);
    for (let r = 0; r < 5; r++) b!.pool.report(hold(b!.pool, 1), ok);
    b!.pool.report(hold(b!.pool, 1), { kind: 'transient', reason: '502' }, '502 transient');
    await a!.pool.flushCounters();
    await b!.pool.flushCounters();
    await a!.pool.flushCounters();
    const row = await opened.store.db
      .selectFrom('upstream_keys')
      .select(['requests', 'failures'])
      .executeTakeFirstOrThrow();
    expect([Number(row.requests), Number(row.failures)]).toEqual([13, 1]);
    // A reload shows the total on B, without B writing anything twice.
    await b!.pool.reloadKey(1);
    expect(b!.pool.get(1)).toMatchObject({ requests: 13, failures: 1 });
    await b!.pool.flushCounters();
    const again = await opened.store.db
      .selectFrom('upstream_keys')
      .select('requests')
      .executeTakeFirstOrThrow();
    expect(Number(again.requests)).toBe(13);
  });

  it('INIT_KEYS on three instances starting at once: one row per key, every pool has each once', async () => {
    const all = await startInstances(3);
    const keys = [1, 2, 3, 4, 5].map(secret);
    const results = await Promise.all(
      all.map(async (i) => {
        const out: boolean[] = [];
        for (const k of keys) out.push((await i.pool.add(k)).ok);
        return out;
      }),
    );
    // Each key was inserted by exactly one instance; the others got a quiet duplicate.
    keys.forEach((_, k) => expect(results.filter((r) => r[k]).length).toBe(1));
    const rows = await opened.store.db.selectFrom('upstream_keys').select('id').orderBy('id').execute();
    expect(rows).toHaveLength(5);
    for (const i of all) {
      expect(i.pool.list().map((k) => k.id)).toEqual(rows.map((r) => r.id));
      expect(i.logs.filter((l) => l.level >= 40)).toEqual([]);
    }
  });

  it('notices B missed are made good by reloadKeys, in place', async () => {
    const [a, b] = await startInstances(2);
    for (let n = 1; n <= 4; n++) await a!.pool.add(secret(n));
    const kept = [1, 2, 3].map((id) => hold(b!.pool, id));
    b!.pool.report(kept[2]!, ok);
    b!.deafen();
    await a!.pool.add(secret(5));
    await a!.pool.setEnabled(1, false);
    await a!.pool.setGroup(2, 'org-c');
    a!.pool.report(hold(a!.pool, 3), {
      kind: 'rate-limited',
      reason: 'rate_limit_exceeded',
      retryAfterMs: 60_000,
    });
    await a!.pool.settled();
    await a!.pool.remove(4);
    expect(b!.pool.list().map((k) => [k.id, k.status, k.group])).toEqual([
      [1, 'active', null],
      [2, 'active', null],
      [3, 'active', null],
      [4, 'active', null],
    ]);
    await b!.pool.reloadKeys();
    expect(b!.pool.list().map((k) => [k.id, k.status, k.group])).toEqual([
      [1, 'disabled', null],
      [2, 'active', 'org-c'],
      [3, 'cooling', null],
      [5, 'active', null],
    ]);
    expect(hold(b!.pool, 2)).toBe(kept[1]);
    expect(b!.pool.pickPinned({ pins: [{ keyId: 3, group: null }] }, new Set())).toBe(kept[2]);
    expect(kept[2]!.pendingRequests).toBe(1);
    expect(b!.logs.some((l) => l.msg === 'upstream key pool reconciled with the store')).toBe(true);
  });

  it('Redis restarted empty: changes made while it was down reach B by themselves', async () => {
    const own = await startRedisServer();
    try {
      const [a, b] = await startInstances(2, own.addr);
      await a!.pool.add(secret(1));
      await a!.pool.add(secret(2));
      await own.kill();
      await waitUntil('links down', () => [a!, b!].every((i) => i.node.redis.state().kind === 'down'));
      // Written to the store at once; the notices cannot go out and are sent again later.
      await a!.pool.setEnabled(1, false);
      expect((await a!.pool.add(secret(3))).ok).toBe(true);
      expect(b!.pool.get(1)?.status).toBe('active');
      expect(a!.logs.some((l) => l.msg.startsWith('could not announce an upstream key change'))).toBe(true);
      await own.start();
      const took = await waitUntil(
        'B caught up',
        () => b!.pool.get(1)?.status === 'disabled' && b!.pool.get(3) !== undefined,
        5_000,
      );
      expect(took).toBeLessThan(5_000);
      expect(picked(b!.pool)).toEqual(new Set([2, 3]));
    } finally {
      for (const i of instances.splice(0)) {
        await i.pool.close();
        await i.node.stop();
        await i.store.close();
        expect(errorsOf(i)).toEqual([]);
      }
      await own.stop();
    }
  });
});
