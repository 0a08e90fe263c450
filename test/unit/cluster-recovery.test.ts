// Redis goes away and comes back EMPTY: nothing crashes meanwhile (callers see errors), and
// within 5 s every instance is registered again, has reconciled every topic, and broadcasts,
// rate limits and once-claims work again (scripts re-loaded, channels re-subscribed).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOPICS } from '../../src/cluster/notices.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { sleep, startNode, uniquePrefix, waitUntil, type TestNode } from '../support/cluster-nodes.js';

let server: RedisServer;
let nodes: TestNode[] = [];
beforeAll(async () => {
  server = await startRedisServer();
  const prefix = uniquePrefix();
  nodes = await Promise.all([1, 2, 3].map(() => startNode(server.addr, prefix)));
});
afterAll(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  await server?.stop();
});

describe('Redis restarted empty', () => {
  it('errors surface while it is down, and everything recovers by itself within 5 s', async () => {
    const [a, b, c] = nodes as [TestNode, TestNode, TestNode];
    // Warm up: scripts loaded, versions past 1, a limiter key and a once-claim that will be lost.
    await a.broadcast.publish({ topic: 'account', id: 1 });
    await a.broadcast.publish({ topic: 'key', id: 1 });
    await waitUntil('warm-up delivery', () => c.received.length === 2);
    expect((await b.limiter.check(5, 60, Date.now())).allowed).toBe(true);
    expect((await b.once.run('monthly:5', 60_000, async () => 'sent')).kind).toBe('ran');

    await server.kill();
    await waitUntil('every link notices', () => nodes.every((n) => n.redis.state().kind === 'down'));
    // Callers see errors at once; the notice is still applied on the sender.
    await expect(a.broadcast.publish({ topic: 'account', id: 2 })).rejects.toThrow();
    expect(a.received.at(-1)).toMatchObject({
      notice: { topic: 'account', id: 2 },
      delivery: { kind: 'local' },
    });
    await expect(b.limiter.check(5, 60, Date.now())).rejects.toThrow();
    await expect(b.once.run('monthly:6', 60_000, async () => 'sent')).rejects.toThrow();
    await expect(c.heartbeat.liveInstances()).rejects.toThrow();
    await sleep(500); // longer than the death bound (300 ms): beats fail, nobody crashes
    expect(c.heartbeat.state().kind).toBe('failing');
    expect(c.selfEvents).toContainEqual({ kind: 'unreachable', sinceMs: expect.any(Number) as number });
    const reconcilesBefore = nodes.map((n) => n.reconciles.length);

    await server.start(); // same port, no data
    const restartedAt = Date.now();
    await waitUntil('recovery', async () => {
      const live = await a.heartbeat.liveInstances().catch(() => []);
      return (
        live.length === 3 &&
        nodes.every((n, i) => n.reconciles.length >= reconcilesBefore[i]! + TOPICS.length)
      );
    });
    const recovered = await waitUntil('a broadcast delivered to all', async () => {
      const version = await b.broadcast.publish({ topic: 'lease-recall', accountId: 5 }).catch(() => 0);
      return version > 0;
    });
    await waitUntil('delivery', () =>
      [a, c].every((n) => n.received.some((r) => r.notice.topic === 'lease-recall')),
    );
    const elapsed = Date.now() - restartedAt;
    expect(elapsed).toBeLessThan(5_000);
    expect(recovered).toBeLessThan(5_000);

    for (const node of nodes) {
      const reasons = node.reconciles.slice(-TOPICS.length).map((r) => r.reason.kind);
      expect(reasons.every((k) => k === 'reset')).toBe(true);
      expect(node.selfEvents).toContainEqual({ kind: 're-registered' });
      expect(node.selfEvents).toContainEqual({ kind: 'reachable' });
      expect(node.heartbeat.state().kind).toBe('beating');
    }
    // Nobody was declared dead for the outage.
    expect(nodes.flatMap((n) => n.deaths)).toEqual([]);
    // The limiter's script and state start afresh; the once-claim was lost with the data.
    expect(await b.limiter.check(5, 60, Date.now())).toMatchObject({ allowed: true, remaining: 59 });
    expect((await c.once.run('monthly:5', 60_000, async () => 'again')).kind).toBe('ran');
    const result = await a.broadcast.publishAndWait({ topic: 'account', id: 3 }, { timeoutMs: 2_000 });
    expect(result.kind).toBe('confirmed');
  });
});
