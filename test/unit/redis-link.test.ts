// The Redis link of the cluster mechanics: bounded start-up, fast errors while Redis is away,
// recovery on its own (scripts re-sent, channels re-subscribed), never a crash.
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  connectRedis,
  parseRedisAddr,
  RedisStartupError,
  type ClusterRedis,
} from '../../src/cluster/redis.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { sleep, uniquePrefix, waitUntil } from '../support/cluster-nodes.js';

let server: RedisServer;
let secured: RedisServer;
beforeAll(async () => {
  [server, secured] = await Promise.all([startRedisServer(), startRedisServer({ password: 's3cret-pw' })]);
});
afterAll(async () => {
  await Promise.all([server?.stop(), secured?.stop()]);
});

describe('parseRedisAddr', () => {
  it('reads host:port, a bare host, and bracketed IPv6', () => {
    expect(parseRedisAddr('redis.internal:6380')).toEqual({ host: 'redis.internal', port: 6380 });
    expect(parseRedisAddr('redis')).toEqual({ host: 'redis', port: 6379 });
    expect(parseRedisAddr('[::1]:7000')).toEqual({ host: '::1', port: 7000 });
  });

  it('refuses what is not host:port', () => {
    expect(() => parseRedisAddr('redis://x:1')).toThrow(RedisStartupError);
    expect(() => parseRedisAddr('host:99999')).toThrow(/host:port/);
  });
});

describe('connectRedis', () => {
  it('connects, pings, prefixes keys and closes', async () => {
    const redis = await connectRedis({ addr: server.addr, db: 0, keyPrefix: 'px:' });
    expect(await redis.ping()).toBeGreaterThanOrEqual(0);
    expect(redis.key('rl', 42)).toBe('px:rl:42');
    expect(redis.state()).toEqual({ kind: 'up' });
    await redis.close();
    await redis.close();
    expect(redis.state()).toEqual({ kind: 'closed' });
  });

  it('uses the database index it is given', async () => {
    const redis = await connectRedis({ addr: server.addr, db: 3 });
    await redis.commands.set('db-probe', 'x');
    expect(await redis.commands.call('CLIENT', 'INFO')).toMatch(/ db=3 /);
    await redis.close();
  });

  it('fails start-up within the bound, naming host and port, when nothing listens', async () => {
    const dead = await startRedisServer();
    const addr = dead.addr;
    await dead.stop();
    const started = Date.now();
    const error: unknown = await connectRedis({ addr, db: 0, startupTimeoutMs: 500 }).catch(
      (err: unknown) => err,
    );
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(error).toBeInstanceOf(RedisStartupError);
    expect((error as Error).message).toMatch(new RegExp(`cannot connect to Redis at ${addr} within 500 ms`));
  });

  it('fails start-up on a wrong password without ever printing it', async () => {
    const error: unknown = await connectRedis({
      addr: secured.addr,
      password: 'wrong-password-123',
      db: 0,
      startupTimeoutMs: 500,
    }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(RedisStartupError);
    expect((error as Error).message).toContain(secured.addr);
    expect((error as Error).message).not.toContain('wrong-password-123');
    const ok = await connectRedis({ addr: secured.addr, password: 's3cret-pw', db: 0 });
    expect(await ok.commands.get('nothing')).toBeNull();
    await ok.close();
  });

  it('accepts a pino logger as its log', async () => {
    const redis = await connectRedis({ addr: server.addr, db: 0 }, pino({ level: 'silent' }));
    await redis.close();
  });
});

describe('a running link', () => {
  let redis: ClusterRedis;
  let restartable: RedisServer;
  beforeAll(async () => {
    restartable = await startRedisServer();
    redis = await connectRedis({
      addr: restartable.addr,
      db: 0,
      keyPrefix: uniquePrefix(),
      maxBackoffMs: 100,
    });
  });
  afterAll(async () => {
    await redis?.close();
    await restartable?.stop();
  });

  it('runs a script by digest, and re-sends it after the server forgot it', async () => {
    const script = redis.script(`return redis.call('INCR', KEYS[1])`);
    expect(await script.run([redis.key('n')])).toBe(1);
    await redis.commands.script('FLUSH');
    expect(await script.run([redis.key('n')])).toBe(2);
  });

  it('fails fast while Redis is down, never crashes, and recovers by itself after an empty restart', async () => {
    const channel = redis.key('chan');
    const messages: string[] = [];
    let resubscribed = 0;
    let reconnected = 0;
    redis.onResubscribed(() => (resubscribed += 1));
    redis.onReconnected(() => (reconnected += 1));
    await redis.subscribe(channel, (m) => messages.push(m));
    const script = redis.script(`return redis.call('INCR', KEYS[1])`);
    await script.run([redis.key('count')]);

    await restartable.kill();
    await waitUntil('the link to notice', () => redis.state().kind === 'down');
    const started = Date.now();
    await expect(redis.ping()).rejects.toThrow();
    await expect(script.run([redis.key('count')])).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(500);
    await sleep(300); // several failed reconnection attempts: no unhandled error may escape

    await restartable.start();
    const recovery = await waitUntil('recovery', () => redis.state().kind === 'up' && resubscribed > 0);
    expect(recovery).toBeLessThan(5_000);
    expect(reconnected).toBe(1);
    // Empty server: the script is re-sent, the counter starts again, the channel is live again.
    expect(await script.run([redis.key('count')])).toBe(1);
    await redis.commands.publish(channel, 'hello again');
    await waitUntil('the message', () => messages.includes('hello again'));
  });

  it('a command to a frozen server fails after the command timeout instead of hanging', async () => {
    restartable.pause();
    try {
      const started = Date.now();
      await expect(redis.commands.get(redis.key('x'))).rejects.toThrow(/timed out/i);
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      restartable.resume();
    }
    await waitUntil('answers again', async () => (await redis.ping().catch(() => -1)) >= 0);
  });
});
