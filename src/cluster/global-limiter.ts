/**
 * Requests-per-minute limits over all instances: the in-memory limiter's GCRA
 * (src/accounts/rate-limiter.ts: RateLimit requests per minute, refilled evenly, the same
 * decision shape) kept in Redis, one key per account, checked by ONE Lua script per request (one
 * round trip, atomic, so exact under any concurrency across instances).
 *
 * Clock: Redis's own (TIME inside the script), never the caller's. All instances then judge
 * against one clock, so skew between machines cannot admit more than the limit (at 60,000 RPM a
 * token is worth 1 ms, less than ordinary skew), and the caller's `now` is not needed.
 *
 * Cheap path: a limit of `localFrom` (default 1,000,000 RPM, i.e. 16,667 requests per second,
 * more than a cluster serves) or more is effectively unlimited (root has 6,666,666): it is decided
 * by the in-memory limiter with no round trip.
 *
 * Idle accounts cost nothing: a key expires when its bucket is full again (at most one window).
 */
import { RateLimiter, type Limiter, type RateDecision } from '../accounts/rate-limiter.js';

export type { Limiter } from '../accounts/rate-limiter.js';
import { replyArray, replyInt } from './lua-script.js';
import { messageOf, silentLog, type ClusterLog, type ClusterRedis } from './redis.js';

export interface GlobalLimiterOptions {
  /** Limits at or above this are decided locally, with no round trip (default 1,000,000). */
  readonly localFrom?: number;
  /**
   * When Redis cannot answer: 'throw' (default) rejects the check, so the caller decides;
   * 'local' falls back to this instance's in-memory limiter (each instance then admits up to
   * the limit on its own until Redis is back).
   */
  readonly whenUnavailable?: 'throw' | 'local';
  /** The window RateLimit is counted over (default 60,000 ms; tests shorten it). */
  readonly windowMs?: number;
  readonly log?: ClusterLog;
}

// KEYS: the account's theoretical arrival time (TAT, ms as a float). ARGV: limit, window ms.
// Mirrors RateLimiter.check line by line; returns {allowed, remaining, resetMs, retryAfterMs}.
const GCRA = `
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = window / limit
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < now then tat = now end
local nxt = tat + interval
if nxt - now > window + 1e-9 then
  local retry = math.ceil(tat - (window - interval) - now)
  if retry < 1 then retry = 1 end
  return {0, 0, math.ceil(tat - now), retry}
end
redis.call('SET', KEYS[1], string.format('%.17g', nxt), 'PX', math.ceil(nxt - now))
local remaining = math.floor((window - (nxt - now)) / interval + 1e-9)
if remaining < 0 then remaining = 0 end
return {1, remaining, math.ceil(nxt - now), 0}`;

export class GlobalLimiter implements Limiter {
  private readonly local = new RateLimiter();
  private readonly script;
  private readonly localFrom: number;
  private readonly windowMs: number;
  private readonly log: ClusterLog;
  private fallingBack = false;

  constructor(
    private readonly redis: ClusterRedis,
    private readonly opts: GlobalLimiterOptions = {},
  ) {
    this.script = redis.script(GCRA);
    this.localFrom = opts.localFrom ?? 1_000_000;
    this.windowMs = opts.windowMs ?? 60_000;
    this.log = opts.log ?? silentLog;
  }

  /** Synchronous on the cheap path; otherwise one round trip. `now` is used only locally. */
  check(accountId: number, rpm: number, now: number): RateDecision | Promise<RateDecision> {
    if (rpm >= this.localFrom) return this.local.check(accountId, rpm, now);
    return this.remote(accountId, rpm, now);
  }

  /** Drops the account's state here and in Redis (best effort: the key expires anyway). */
  forget(accountId: number): void {
    this.local.forget(accountId);
    this.redis.commands.del(this.key(accountId)).catch(() => {});
  }

  private async remote(accountId: number, rpm: number, now: number): Promise<RateDecision> {
    let reply: readonly unknown[];
    try {
      reply = replyArray(await this.script.run([this.key(accountId)], [rpm, this.windowMs]));
    } catch (err) {
      if (this.opts.whenUnavailable !== 'local') throw err;
      if (!this.fallingBack) {
        this.fallingBack = true;
        this.log.warn({ error: messageOf(err) }, 'rate limits: Redis unavailable, counting per instance');
      }
      return this.local.check(accountId, rpm, now);
    }
    if (this.fallingBack) {
      this.fallingBack = false;
      this.log.info({}, 'rate limits: counted over the cluster again');
    }
    const [allowed, remaining, resetMs, retryAfterMs] = reply.map(replyInt);
    if (allowed === 1) return { allowed: true, limit: rpm, remaining: remaining ?? 0, resetMs: resetMs ?? 0 };
    return {
      allowed: false,
      limit: rpm,
      remaining: 0,
      retryAfterMs: retryAfterMs ?? 1,
      resetMs: resetMs ?? 0,
    };
  }

  private key(accountId: number): string {
    return this.redis.key('rl', accountId);
  }
}
