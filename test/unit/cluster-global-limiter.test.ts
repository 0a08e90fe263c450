// RPM over all instances: exact under concurrent checks from several clients, refilled evenly,
// the same answers as the in-memory limiter, no round trip for unlimited accounts, idle keys expire.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RateLimiter, type RateDecision } from '../../src/accounts/rate-limiter.js';
import { GlobalLimiter, type Limiter } from '../../src/cluster/global-limiter.js';
import { connectRedis, type ClusterLog, type ClusterRedis } from '../../src/cluster/redis.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { sleep, uniquePrefix } from '../support/cluster-nodes.js';

let server: RedisServer;
let links: ClusterRedis[] = [];
beforeAll(async () => {
  server = await startRedisServer();
  // Five "instances", each with its own connection, sharing one prefix.
  const prefix = uniquePrefix();
  links = await Promise.all(
    [1, 2, 3, 4, 5].map(() => connectRedis({ addr: server.addr, db: 0, keyPrefix: prefix })),
  );
});
afterAll(async () => {
  await Promise.all(links.map((l) => l.close()));
  await server?.stop();
});

/** Redis's clock in milliseconds (the limiter's clock). */
async function redisNow(link: ClusterRedis): Promise<number> {
  const [seconds, micros] = await link.commands.time();
  return Number(seconds) * 1_000 + Number(micros) / 1_000;
}

let nextAccount = 1;
const newAccount = (): number => nextAccount++;

async function hammer(limiters: GlobalLimiter[], account: number, limit: number, perClient: number) {
  const all = await Promise.all(
    limiters.flatMap((limiter) =>
      Array.from({ length: perClient }, () => limiter.check(account, limit, Date.now())),
    ),
  );
  return { admitted: all.filter((d) => d.allowed), refused: all.filter((d) => !d.allowed) };
}

describe('global limiter', () => {
  it('the in-memory limiter and the global one share one interface', () => {
    const limiters: Limiter[] = [new RateLimiter(), new GlobalLimiter(links[0]!)];
    expect(limiters).toHaveLength(2);
  });

  it('admits exactly 60 of 250 concurrent requests from five instances at 60 RPM', async () => {
    const account = newAccount();
    const { admitted, refused } = await hammer(
      links.map((l) => new GlobalLimiter(l)),
      account,
      60,
      50,
    );
    expect(admitted).toHaveLength(60);
    expect(refused).toHaveLength(190);
    for (const r of refused) {
      if (r.allowed) continue;
      expect(r.retryAfterMs).toBeGreaterThanOrEqual(1);
      expect(r.retryAfterMs).toBeLessThanOrEqual(1_000);
    }
  });

  it('admits exactly the limit at a larger scale (1000 per window, 2000 concurrent)', async () => {
    const account = newAccount();
    // A one-hour window makes the refill during the burst negligible (0.3 tokens per second).
    const limiters = links.map((l) => new GlobalLimiter(l, { windowMs: 3_600_000 }));
    const { admitted } = await hammer(limiters, account, 1_000, 400);
    expect(admitted).toHaveLength(1_000);
  });

  it('answers as the in-memory limiter does for the same sequence', async () => {
    const account = newAccount();
    const global = new GlobalLimiter(links[0]!);
    const local = new RateLimiter();
    const started = await redisNow(links[0]!);
    const pairs: Array<[RateDecision, RateDecision]> = [];
    for (let i = 0; i < 62; i++) {
      pairs.push([await global.check(account, 60, 0), local.check(account, 60, started)]);
    }
    // Redis's clock moved on during the sequence while the in-memory one stood still at its start:
    // times may differ by that much, nothing else may.
    const slack = (await redisNow(links[0]!)) - started + 1;
    for (const [actual, expected] of pairs) {
      expect(actual.allowed).toBe(expected.allowed);
      expect(actual.limit).toBe(expected.limit);
      expect(actual.remaining).toBe(expected.remaining);
      expect(Math.abs(actual.resetMs - expected.resetMs)).toBeLessThanOrEqual(slack);
      if (!actual.allowed && !expected.allowed) {
        expect(Math.abs(actual.retryAfterMs - expected.retryAfterMs)).toBeLessThanOrEqual(slack);
      }
    }
    expect(pairs.filter(([a]) => a.allowed)).toHaveLength(60);
  });

  it('refills evenly: one request per interval once the burst is spent', async () => {
    const account = newAccount();
    // 10 per second: one token every 100 ms.
    const limiter = new GlobalLimiter(links[1]!, { windowMs: 1_000 });
    for (let i = 0; i < 10; i++) expect((await limiter.check(account, 10, 0)).allowed).toBe(true);
    const refused = await limiter.check(account, 10, 0);
    expect(refused.allowed).toBe(false);
    if (refused.allowed) return;
    expect(refused.retryAfterMs).toBeGreaterThan(50);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(100);
    await sleep(refused.retryAfterMs + 5);
    // Sent together, run back to back by Redis: one token had come back, so exactly one passes.
    const pair = await Promise.all([limiter.check(account, 10, 0), limiter.check(account, 10, 0)]);
    expect(pair.map((d) => d.allowed)).toEqual([true, false]);
    const t1 = await redisNow(links[1]!);
    await sleep(350);
    const t2 = await redisNow(links[1]!);
    const after = await Promise.all(Array.from({ length: 8 }, () => limiter.check(account, 10, 0)));
    // One token per 100 ms of Redis time since the bucket was empty (t1 is a hair after that).
    const expected = Math.floor((t2 - t1) / 100);
    expect(after.filter((d) => d.allowed).length).toBeGreaterThanOrEqual(expected);
    expect(after.filter((d) => d.allowed).length).toBeLessThanOrEqual(expected + 1);
  });

  it('lets an idle account cost nothing: its key expires once the bucket is full again', async () => {
    const account = newAccount();
    const limiter = new GlobalLimiter(links[2]!, { windowMs: 1_000 });
    const key = links[2]!.key('rl', account);
    await limiter.check(account, 10, 0);
    const ttl = await links[2]!.commands.pttl(key);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(100);
    await sleep(150);
    expect(await links[2]!.commands.exists(key)).toBe(0);
  });

  it('forget() starts the account afresh', async () => {
    const account = newAccount();
    const limiter = new GlobalLimiter(links[3]!);
    for (let i = 0; i < 3; i++) await limiter.check(account, 3, 0);
    expect((await limiter.check(account, 3, 0)).allowed).toBe(false);
    limiter.forget(account);
    await sleep(20);
    expect(await limiter.check(account, 3, 0)).toMatchObject({ allowed: true, remaining: 2 });
  });

  it('decides an effectively unlimited account (root: 6,666,666) locally, with no round trip', async () => {
    const spare = await startRedisServer();
    const link = await connectRedis({ addr: spare.addr, db: 0 });
    const limiter = new GlobalLimiter(link);
    await spare.kill(); // Redis gone: the cheap path must not notice
    try {
      const decision = limiter.check(1, 6_666_666, Date.now());
      expect(decision).not.toBeInstanceOf(Promise);
      expect(decision).toMatchObject({ allowed: true, limit: 6_666_666 });
      await expect(limiter.check(2, 60, Date.now())).rejects.toThrow();
    } finally {
      await link.close();
      await spare.stop();
    }
  });

  it("falls back to this instance's own count when asked to, while Redis is away", async () => {
    const spare = await startRedisServer();
    const warnings: string[] = [];
    const log: ClusterLog = { info: () => {}, warn: (_o, msg) => warnings.push(msg), error: () => {} };
    const link = await connectRedis({ addr: spare.addr, db: 0 });
    const limiter = new GlobalLimiter(link, { whenUnavailable: 'local', log });
    await spare.kill();
    try {
      for (let i = 0; i < 2; i++)
        expect(await limiter.check(7, 2, Date.now())).toMatchObject({ allowed: true });
      expect(await limiter.check(7, 2, Date.now())).toMatchObject({ allowed: false });
      expect(warnings).toEqual(['rate limits: Redis unavailable, counting per instance']);
    } finally {
      await link.close();
      await spare.stop();
    }
  });
});
