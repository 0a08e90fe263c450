// Change notices between instances: delivery, order, gaps and resets seen as reconciles, and
// acknowledged broadcasts that wait for every live instance (or name who did not confirm).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeEnvelope, parseNotice } from '../../src/cluster/notices.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { sleep, startNode, uniquePrefix, waitUntil, type TestNode } from '../support/cluster-nodes.js';

let server: RedisServer;
let nodes: TestNode[] = [];
beforeAll(async () => {
  server = await startRedisServer();
});
afterEach(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  nodes = [];
});
afterAll(async () => {
  await server?.stop();
});

async function startNodes(count: number, prefix = uniquePrefix()): Promise<TestNode[]> {
  const started = await Promise.all(Array.from({ length: count }, () => startNode(server.addr, prefix)));
  nodes.push(...started);
  await waitUntil(
    'all registered',
    async () => (await started[0]!.heartbeat.liveInstances()).length === count,
  );
  return started;
}

describe('notices', () => {
  it('parses only the kinds it knows, with integer ids', () => {
    expect(parseNotice({ topic: 'account', id: 7 })).toEqual({ topic: 'account', id: 7 });
    expect(parseNotice({ topic: 'lease-recall', accountId: 7 })).toEqual({
      topic: 'lease-recall',
      accountId: 7,
    });
    expect(parseNotice({ topic: 'account', id: '7' })).toBeUndefined();
    expect(parseNotice({ topic: 'future-kind', id: 7 })).toBeUndefined();
    expect(decodeEnvelope('e 3 {"origin":"a","notice":{"topic":"key","id":1}}')).toEqual({
      epoch: 'e',
      version: 3,
      origin: 'a',
      notice: { topic: 'key', id: 1 },
    });
    expect(decodeEnvelope('e x {}')).toBeUndefined();
    expect(decodeEnvelope('e 3 not json')).toBeUndefined();
  });
});

describe('broadcast', () => {
  it('delivers every notice to every other instance, in version order, and applies it locally first', async () => {
    const [a, b, c] = await startNodes(3);
    const seenLocally: number[] = [];
    a!.broadcast.on('account', (notice, delivery) => {
      if (delivery.kind === 'local') seenLocally.push(notice.id);
    });
    const versions: number[] = [];
    for (let id = 1; id <= 20; id++) {
      versions.push(await a!.broadcast.publish({ topic: 'account', id }));
      expect(seenLocally).toContain(id); // applied before publish resolved
    }
    versions.push(await b!.broadcast.publish({ topic: 'lease-recall', accountId: 9 }));
    await waitUntil('delivery', () => c!.received.length === 21 && b!.received.length === 21);
    expect(versions.slice(0, 20)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(versions[20]).toBe(1); // each topic counts on its own
    const atC = c!.received.filter((r) => r.notice.topic === 'account');
    expect(atC.map((r) => r.notice)).toEqual(
      Array.from({ length: 20 }, (_, i) => ({ topic: 'account', id: i + 1 })),
    );
    expect(atC.map((r) => (r.delivery.kind === 'remote' ? r.delivery.version : 0))).toEqual(
      versions.slice(0, 20),
    );
    expect(atC[0]!.delivery).toMatchObject({ kind: 'remote', origin: a!.instanceId });
    // The sender applied its own notices once (locally), not again from the channel.
    expect(a!.received.filter((r) => r.notice.topic === 'account')).toHaveLength(20);
    expect(a!.received.every((r) => r.notice.topic !== 'account' || r.delivery.kind === 'local')).toBe(true);
    expect(nodes.flatMap((n) => n.reconciles)).toEqual([]);
  });

  it('calls reconcile when a version was skipped, and goes on trusting later ones', async () => {
    const [a, b] = await startNodes(2);
    await a!.broadcast.publish({ topic: 'key', id: 1 });
    await waitUntil('first', () => b!.received.length === 1);
    // A notice lost on the way: the counter moved without a message reaching anyone.
    await a!.redis.commands.incr(a!.redis.key('bc', 'version', 'key'));
    await a!.broadcast.publish({ topic: 'key', id: 3 });
    await waitUntil('gap seen', () => b!.reconciles.length === 1);
    expect(b!.reconciles[0]).toEqual({ topic: 'key', reason: { kind: 'gap', expected: 2, received: 3 } });
    expect(b!.received.map((r) => r.notice)).toEqual([
      { topic: 'key', id: 1 },
      { topic: 'key', id: 3 },
    ]);
    await a!.broadcast.publish({ topic: 'key', id: 4 });
    await waitUntil('next', () => b!.received.length === 3);
    expect(b!.reconciles).toHaveLength(1);
  });

  it('sees Redis losing its data as a reset of every topic', async () => {
    const [a, b] = await startNodes(2);
    await a!.broadcast.publish({ topic: 'account', id: 1 });
    await waitUntil('first', () => b!.received.length === 1);
    await a!.redis.commands.del(a!.redis.key('bc', 'epoch'), a!.redis.key('bc', 'version', 'account'));
    expect(await a!.broadcast.publish({ topic: 'account', id: 2 })).toBe(1);
    await waitUntil('reset', () => b!.reconciles.length === 3);
    expect(b!.reconciles.map((r) => r.topic).sort()).toEqual(['account', 'key', 'lease-recall']);
    expect(b!.reconciles.every((r) => r.reason.kind === 'reset')).toBe(true);
  });

  it('reconciles after a handler threw, retrying a failing reconcile until it succeeds', async () => {
    const prefix = uniquePrefix();
    const [a] = await startNodes(1, prefix);
    let failures = 2;
    const b = await startNode(server.addr, prefix, {
      onReconcile: () => {
        if (failures-- > 0) throw new Error('database away');
      },
    });
    nodes.push(b);
    b.broadcast.on('account', () => {
      throw new Error('handler bug');
    });
    await a!.broadcast.publish({ topic: 'account', id: 5 });
    await waitUntil('reconciled', () => b.reconciles.length === 3, 10_000);
    expect(b.reconciles.map((r) => r.reason)).toEqual([
      { kind: 'handler-failed', error: 'handler bug' },
      { kind: 'handler-failed', error: 'handler bug' },
      { kind: 'handler-failed', error: 'handler bug' },
    ]);
    expect(b.logs.some((l) => l.msg === 'broadcast: reconcile failed')).toBe(true);
  });

  it('publishAndWait resolves once every live instance applied the notice', async () => {
    const [a, b, c] = await startNodes(3);
    let slowApplied = false;
    c!.broadcast.on('lease-recall', async () => {
      await sleep(150); // an async handler: "applied" means it has finished
      slowApplied = true;
    });
    const result = await a!.broadcast.publishAndWait(
      { topic: 'lease-recall', accountId: 3 },
      { timeoutMs: 3_000 },
    );
    expect(slowApplied).toBe(true);
    expect(result.kind).toBe('confirmed');
    expect(result.confirmed[0]).toBe(a!.instanceId);
    expect([...result.confirmed].sort()).toEqual([a!.instanceId, b!.instanceId, c!.instanceId].sort());
    expect(result.departed).toEqual([]);
  });

  it('publishAndWait times out and names a live instance that does not confirm', async () => {
    const [a, b, c] = await startNodes(3);
    // c stays registered (its heartbeat beats) but no longer applies notices: a hung instance.
    await c!.broadcast.stop();
    const started = Date.now();
    const result = await a!.broadcast.publishAndWait({ topic: 'account', id: 8 }, { timeoutMs: 400 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(390);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(result).toMatchObject({ kind: 'timeout', missing: [c!.instanceId], departed: [] });
    expect([...result.confirmed].sort()).toEqual([a!.instanceId, b!.instanceId].sort());
  });

  it('publishAndWait stops waiting for an instance that dies meanwhile, and reports it as departed', async () => {
    const [a, , c] = await startNodes(3);
    await c!.broadcast.stop();
    const waiting = a!.broadcast.publishAndWait({ topic: 'account', id: 9 }, { timeoutMs: 3_000 });
    await sleep(50);
    await c!.heartbeat.stop(); // deregistered: no longer live
    const result = await waiting;
    expect(result).toMatchObject({ kind: 'confirmed', departed: [c!.instanceId] });
  });

  it('a late joiner starts from the current versions without reconciling', async () => {
    const prefix = uniquePrefix();
    const [a] = await startNodes(1, prefix);
    for (let id = 1; id <= 5; id++) await a!.broadcast.publish({ topic: 'account', id });
    const late = await startNode(server.addr, prefix);
    nodes.push(late);
    await a!.broadcast.publish({ topic: 'account', id: 6 });
    await waitUntil('delivery', () => late.received.length === 1);
    expect(late.received[0]!.delivery).toMatchObject({ kind: 'remote', version: 6 });
    expect(late.reconciles).toEqual([]);
  });
});
