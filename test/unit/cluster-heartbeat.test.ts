// Instance liveness: registration, graceful leave, death noticed within the bound and handled by
// exactly one survivor, a failed handler handled again, and the fencing of an instance that was
// declared dead while it still ran.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Heartbeat } from '../../src/cluster/heartbeat.js';
import { connectRedis } from '../../src/cluster/redis.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import {
  sleep,
  startNode,
  uniquePrefix,
  waitUntil,
  type NodeOptions,
  type TestNode,
} from '../support/cluster-nodes.js';

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

async function startNodes(count: number, prefix: string, options: NodeOptions = {}): Promise<TestNode[]> {
  const started = await Promise.all(
    Array.from({ length: count }, () => startNode(server.addr, prefix, options)),
  );
  nodes.push(...started);
  return started;
}

/** A crash as the others see it: the instance's link to Redis is gone, with no goodbye. */
async function crash(node: TestNode): Promise<void> {
  await node.redis.close();
}

const allDeaths = (): string[] => nodes.flatMap((n) => n.deaths);

describe('heartbeat', () => {
  it('lists the live instances, and a graceful stop leaves at once without a death', async () => {
    const prefix = uniquePrefix();
    const [a, b, c] = await startNodes(3, prefix);
    expect([...(await a!.heartbeat.liveInstances())].sort()).toEqual(
      [a!.instanceId, b!.instanceId, c!.instanceId].sort(),
    );
    expect(a!.heartbeat.state().kind).toBe('beating');
    await c!.stop();
    expect(await a!.heartbeat.liveInstances()).not.toContain(c!.instanceId);
    expect(c!.heartbeat.state()).toEqual({ kind: 'stopped' });
    await sleep(600); // two death bounds: nobody may think c died
    expect(allDeaths()).toEqual([]);
  });

  it('notices a crashed instance within the bound, and exactly one survivor handles it', async () => {
    const prefix = uniquePrefix();
    const [dead, ...survivors] = await startNodes(5, prefix);
    await waitUntil('all live', async () => (await survivors[0]!.heartbeat.liveInstances()).length === 5);
    await sleep(350); // survivors only judge after a full death bound of their own beats
    const crashedAt = Date.now();
    await crash(dead!);
    const noticed = await waitUntil('a survivor handles the death', () => allDeaths().length > 0);
    // Bound: deadAfterMs (300) + one sweep interval (50) + scheduling slack.
    expect(noticed).toBeLessThan(300 + 50 + 250);
    expect(Date.now() - crashedAt).toBeGreaterThanOrEqual(250);
    await sleep(500); // ten more sweeps by four survivors: still one handler
    expect(allDeaths()).toEqual([dead!.instanceId]);
    expect(await survivors[0]!.heartbeat.liveInstances()).not.toContain(dead!.instanceId);
  });

  it('hands a death to another run when the handler fails (its claim expires)', async () => {
    const prefix = uniquePrefix();
    let failures = 1;
    const options: NodeOptions = {
      claimMs: 200,
      onDead: () => {
        if (failures-- > 0) throw new Error('could not reclaim');
      },
    };
    const [dead, ...survivors] = await startNodes(3, prefix, options);
    await sleep(350);
    await crash(dead!);
    await waitUntil('handled twice', () => allDeaths().length === 2, 3_000);
    await sleep(400);
    expect(allDeaths()).toEqual([dead!.instanceId, dead!.instanceId]);
    expect(survivors.some((s) => s.logs.some((l) => l.msg === 'heartbeat: death handler failed'))).toBe(true);
  });

  it('keeps a handler that outlasts its claim exclusive by renewing the claim', async () => {
    const prefix = uniquePrefix();
    const [dead] = await startNodes(4, prefix, { claimMs: 150, onDead: () => sleep(700) });
    await sleep(350);
    await crash(dead!);
    await waitUntil('handled', () => allDeaths().length === 1, 3_000);
    await sleep(1_000); // the handler ran 700 ms, over four claim periods; then it finished
    expect(allDeaths()).toEqual([dead!.instanceId]);
  });

  it('fences an instance declared dead while it still runs, until its death was handled', async () => {
    const prefix = uniquePrefix();
    let release: () => void = () => {};
    const handled = new Promise<void>((resolve) => (release = resolve));
    const [survivor] = await startNodes(1, prefix, {
      intervalMs: 50,
      deadAfterMs: 150,
      onDead: () => handled,
    });
    // The slow one beats every 400 ms: to the survivor (bound 150 ms) it looks dead between beats.
    const slow = await startNode(server.addr, prefix, { intervalMs: 400, deadAfterMs: 800 });
    nodes.push(slow);
    await waitUntil('declared dead', () => survivor!.deaths.length === 1, 3_000);
    expect(survivor!.deaths).toEqual([slow.instanceId]);
    await waitUntil('it learns it', () => slow.selfEvents.length > 0, 3_000);
    expect(slow.selfEvents).toEqual([{ kind: 'declared-dead' }]);
    expect(slow.heartbeat.state().kind).toBe('declared-dead');
    await sleep(450); // it keeps beating, but stays out while its death is being handled
    expect(await survivor!.heartbeat.liveInstances()).not.toContain(slow.instanceId);
    release();
    await waitUntil('rejoined', () => slow.selfEvents.length === 2, 3_000);
    expect(slow.selfEvents[1]).toEqual({ kind: 'rejoined' });
    expect(slow.heartbeat.state().kind).toBe('beating');
    expect(await survivor!.heartbeat.liveInstances()).toContain(slow.instanceId);
  });

  it('with the default timings (1 s beats, 5 s bound), a death is handled within 6.5 s', async () => {
    const prefix = uniquePrefix();
    const links = await Promise.all(
      [0, 1].map(() => connectRedis({ addr: server.addr, db: 0, keyPrefix: prefix })),
    );
    const deaths: string[] = [];
    const [dying, survivor] = links.map(
      (redis) => new Heartbeat(redis, { onInstanceDead: (id) => void deaths.push(id) }),
    );
    try {
      await Promise.all([dying!.start(), survivor!.start()]);
      const crashedAt = Date.now();
      await links[0]!.close();
      await waitUntil('the death', () => deaths.length === 1, 8_000);
      const bound = Date.now() - crashedAt;
      expect(bound).toBeGreaterThan(4_000);
      expect(bound).toBeLessThan(6_500);
      expect(deaths).toEqual([dying!.instanceId]);
    } finally {
      await Promise.all([dying!.stop(), survivor!.stop()]);
      await Promise.all(links.map((l) => l.close()));
    }
  }, 20_000);

  it('refuses a death bound shorter than two beats', async () => {
    const redis = await connectRedis({ addr: server.addr, db: 0 });
    expect(() => new Heartbeat(redis, { intervalMs: 1_000, deadAfterMs: 1_500 })).toThrow(/2 × intervalMs/);
    await redis.close();
  });
});
