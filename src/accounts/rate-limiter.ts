/**
 * Requests-per-minute limits, one per account, with GCRA (the generic cell rate algorithm): a
 * token bucket of RPM tokens refilled evenly over a minute, kept as a single "theoretical arrival
 * time" per account. O(1) per request and exact under any concurrency, since Node runs each
 * check to completion before the next.
 */

export type RateDecision =
  | { readonly allowed: true; readonly limit: number; readonly remaining: number; readonly resetMs: number }
  | {
      readonly allowed: false;
      readonly limit: number;
      readonly remaining: 0;
      readonly retryAfterMs: number;
      readonly resetMs: number;
    };

const WINDOW_MS = 60_000;

/**
 * What the meter needs of a limiter: this in-memory one (one process), or the cluster's, which
 * counts over every instance in one Redis round trip (cluster/global-limiter.ts).
 */
export interface Limiter {
  check(accountId: number, rpm: number, now: number): RateDecision | Promise<RateDecision>;
  forget(accountId: number): void;
}

export class RateLimiter implements Limiter {
  private readonly tat = new Map<number, number>();

  check(accountId: number, rpm: number, now: number): RateDecision {
    const interval = WINDOW_MS / rpm;
    const tolerance = WINDOW_MS - interval;
    const tat = Math.max(this.tat.get(accountId) ?? now, now);
    const next = tat + interval;
    if (next - now > WINDOW_MS + 1e-9) {
      const retryAfterMs = Math.ceil(tat - tolerance - now);
      return {
        allowed: false,
        limit: rpm,
        remaining: 0,
        retryAfterMs: Math.max(1, retryAfterMs),
        resetMs: Math.ceil(tat - now),
      };
    }
    this.tat.set(accountId, next);
    const remaining = Math.max(0, Math.floor((WINDOW_MS - (next - now)) / interval + 1e-9));
    return { allowed: true, limit: rpm, remaining, resetMs: Math.ceil(next - now) };
  }

  forget(accountId: number): void {
    this.tat.delete(accountId);
  }
}
