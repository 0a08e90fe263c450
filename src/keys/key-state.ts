/**
 * Upstream key states and the pure transition rules between them. The pool applies these; the
 * rules never look at the clock or the database themselves, which keeps them unit-testable.
 *
 *   active ──429──────────────▶ cooling(until Retry-After)      ──time──▶ active
 *   active ──5xx/timeout ×N───▶ cooling(growing interval)       ──time──▶ active (outlier ejection)
 *   active ──insufficient_quota▶ parked(probe at +interval)     ──probe ok──▶ active
 *   active ──401 invalid key──▶ disabled(reason, at)            ──admin──▶ active
 *
 * A disabled key leaves that state only by an administrator's decision, never by an outcome.
 */
import type { UpstreamOutcome } from '../upstream/classify-outcome.js';

export type KeyState =
  | { readonly kind: 'active' }
  | { readonly kind: 'cooling'; readonly until: number; readonly reason: string }
  | { readonly kind: 'parked'; readonly reason: string; readonly probeAt: number }
  | { readonly kind: 'disabled'; readonly reason: string; readonly at: number };

export type KeyStatus = KeyState['kind'];

export interface HealthPolicy {
  /** Cooling used for a 429 without Retry-After and for 403. */
  readonly cooldownMs: number;
  /** Consecutive transient failures before a key is ejected. */
  readonly ejectAfter: number;
  /** First ejection interval; doubles per repeated ejection up to `maxEjectMs`. */
  readonly ejectBaseMs: number;
  readonly maxEjectMs: number;
  /** Delay before a parked (out of quota) key is given a probe request. */
  readonly probeIntervalMs: number;
}

export interface KeyHealth {
  state: KeyState;
  consecutiveFailures: number;
  /** How many times in a row the key was ejected; grows the ejection interval. */
  ejections: number;
}

/** True when selection may hand this key out now. A parked key is due for its probe. */
export function isUsable(state: KeyState, now: number): boolean {
  switch (state.kind) {
    case 'active':
      return true;
    case 'cooling':
      return state.until <= now;
    case 'parked':
      return state.probeAt <= now;
    case 'disabled':
      return false;
  }
}

/**
 * The next health of a key after one upstream outcome. `othersUsable` is how many *other* keys
 * are usable right now: a transient fault never ejects the last usable key, since a flaky key
 * beats no key at all.
 */
export function nextHealth(
  health: KeyHealth,
  outcome: UpstreamOutcome,
  now: number,
  policy: HealthPolicy,
  othersUsable: number,
): KeyHealth {
  // Only an administrator enables a disabled key again: an answer that arrives after the key was
  // disabled (a request already in flight, here or on another instance) leaves it disabled.
  if (health.state.kind === 'disabled') return health;
  switch (outcome.kind) {
    case 'ok':
    case 'client-error':
      return { state: { kind: 'active' }, consecutiveFailures: 0, ejections: 0 };
    case 'key-invalid':
      return { ...health, state: { kind: 'disabled', reason: outcome.reason, at: now } };
    case 'key-quota':
      return {
        ...health,
        state: { kind: 'parked', reason: outcome.reason, probeAt: now + policy.probeIntervalMs },
      };
    case 'rate-limited': {
      if (othersUsable === 0) return health;
      const wait = outcome.retryAfterMs ?? policy.cooldownMs;
      return { ...health, state: { kind: 'cooling', until: now + wait, reason: outcome.reason } };
    }
    case 'transient': {
      const failures = health.consecutiveFailures + 1;
      if (failures < policy.ejectAfter || othersUsable === 0) {
        return { ...health, consecutiveFailures: failures };
      }
      const interval = Math.min(policy.maxEjectMs, policy.ejectBaseMs * 2 ** health.ejections);
      return {
        state: {
          kind: 'cooling',
          until: now + interval,
          reason: `ejected after ${failures} failures: ${outcome.reason}`,
        },
        consecutiveFailures: 0,
        ejections: health.ejections + 1,
      };
    }
  }
}
