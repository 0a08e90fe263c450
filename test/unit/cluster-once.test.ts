// "Once cluster-wide": one runner among concurrent instances, a failed run given back, expiry.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Once } from '../../src/cluster/once.js';
import { connectRedis, type ClusterRedis } from '../../src/cluster/redis.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { sleep, uniquePrefix } from '../support/cluster-nodes.js';

let server: RedisServer;
let links: ClusterRedis[] = [];
beforeAll(async () => {
  server = await startRedisServer();
  const prefix = uniquePrefix();
  links = await Promise.all(
    [1, 2, 3, 4].map(() => connectRedis({ addr: server.addr, db: 0, keyPrefix: prefix })),
  );
});
afterAll(async () => {
  await Promise.all(links.map((l) => l.close()));
  await server?.stop();
});

describe('once', () => {
  it('runs the work on exactly one of several instances asking at the same time', async () => {
    let runs = 0;
    const results = await Promise.all(
      links.flatMap((link) =>
        [1, 2, 3].map(() =>
          new Once(link).run('soft-limit:42:2026-11', 60_000, async () => {
            runs += 1;
            return 'sent';
          }),
        ),
      ),
    );
    expect(runs).toBe(1);
    expect(results.filter((r) => r.kind === 'ran')).toEqual([{ kind: 'ran', value: 'sent' }]);
    expect(results.filter((r) => r.kind === 'skipped')).toHaveLength(11);
  });

  it('gives the claim back when the work fails, so a later attempt runs it', async () => {
    const [a, b] = [new Once(links[0]!), new Once(links[1]!)];
    await expect(a.run('mail:7', 60_000, () => Promise.reject(new Error('smtp down')))).rejects.toThrow(
      'smtp down',
    );
    expect(await b.run('mail:7', 60_000, async () => 1)).toEqual({ kind: 'ran', value: 1 });
    expect(await a.run('mail:7', 60_000, async () => 2)).toEqual({ kind: 'skipped' });
  });

  it('lets the name be claimed again once its expiry has passed', async () => {
    const once = new Once(links[2]!);
    expect(await once.claim('short', 50)).toBeDefined();
    expect(await once.claim('short', 50)).toBeUndefined();
    await sleep(80);
    expect(await once.claim('short', 50)).toBeDefined();
  });

  it("releasing an expired claim never removes a later claimant's", async () => {
    const [a, b] = [new Once(links[0]!), new Once(links[3]!)];
    const first = await a.claim('handover', 50);
    await sleep(80);
    const second = await b.claim('handover', 60_000);
    expect(second).toBeDefined();
    await first!.release();
    expect(await a.claim('handover', 60_000)).toBeUndefined();
  });
});
