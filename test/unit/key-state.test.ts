import { describe, expect, it } from 'vitest';
import { isUsable, nextHealth, type HealthPolicy, type KeyHealth } from '../../src/keys/key-state.js';
import { classifyResponse, isRetryable, parseRetryAfter } from '../../src/upstream/classify-outcome.js';

const policy: HealthPolicy = {
  cooldownMs: 20_000,
  ejectAfter: 3,
  ejectBaseMs: 10_000,
  maxEjectMs: 300_000,
  probeIntervalMs: 3_600_000,
};
const fresh: KeyHealth = { state: { kind: 'active' }, consecutiveFailures: 0, ejections: 0 };
const err = (code: string, type = 'invalid_request_error'): Buffer =>
  Buffer.from(JSON.stringify({ error: { message: 'm', type, param: null, code } }));

describe('classifyResponse', () => {
  it('classifies each upstream answer', () => {
    expect(classifyResponse(200, undefined, undefined, 0)).toEqual({ kind: 'ok' });
    expect(classifyResponse(400, undefined, err('x'), 0)).toEqual({ kind: 'client-error' });
    expect(classifyResponse(404, undefined, undefined, 0).kind).toBe('client-error');
    expect(classifyResponse(413, undefined, undefined, 0).kind).toBe('client-error');
    expect(classifyResponse(500, undefined, undefined, 0).kind).toBe('transient');
    expect(classifyResponse(503, undefined, Buffer.from('<html>'), 0).kind).toBe('transient');
    expect(classifyResponse(401, undefined, err('invalid_api_key'), 0)).toEqual({
      kind: 'key-invalid',
      reason: 'invalid_api_key',
    });
    expect(classifyResponse(401, undefined, err('account_deactivated'), 0)).toEqual({
      kind: 'key-invalid',
      reason: 'account_deactivated',
    });
    expect(classifyResponse(401, undefined, Buffer.from('garbage'), 0)).toEqual({
      kind: 'key-invalid',
      reason: 'unauthorized',
    });
    expect(classifyResponse(429, undefined, err('insufficient_quota', 'insufficient_quota'), 0)).toEqual({
      kind: 'key-quota',
      reason: 'insufficient_quota',
    });
    expect(classifyResponse(400, undefined, err('billing_hard_limit_reached'), 0).kind).toBe('key-quota');
    expect(classifyResponse(429, '7', err('rate_limit_exceeded', 'requests'), 0)).toEqual({
      kind: 'rate-limited',
      reason: 'rate_limit_exceeded',
      retryAfterMs: 7000,
    });
    expect(classifyResponse(403, undefined, undefined, 0).kind).toBe('rate-limited');
  });

  it('says which outcomes are worth another key', () => {
    expect(isRetryable({ kind: 'ok' })).toBe(false);
    expect(isRetryable({ kind: 'client-error' })).toBe(false);
    expect(isRetryable({ kind: 'transient', reason: '' })).toBe(true);
    expect(isRetryable({ kind: 'key-invalid', reason: '' })).toBe(true);
  });

  it('parses Retry-After as seconds or a date, capped', () => {
    expect(parseRetryAfter('2', 0)).toBe(2000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4000)).toBe(6000);
    expect(parseRetryAfter('999999', 0)).toBe(3_600_000);
    expect(parseRetryAfter('soon', 0)).toBeUndefined();
  });
});

describe('key state transitions', () => {
  it('disables on key-invalid and parks on quota', () => {
    expect(nextHealth(fresh, { kind: 'key-invalid', reason: 'invalid_api_key' }, 5, policy, 2).state).toEqual(
      { kind: 'disabled', reason: 'invalid_api_key', at: 5 },
    );
    expect(
      nextHealth(fresh, { kind: 'key-quota', reason: 'insufficient_quota' }, 5, policy, 0).state,
    ).toEqual({ kind: 'parked', reason: 'insufficient_quota', probeAt: 5 + policy.probeIntervalMs });
  });

  it('cools for Retry-After or the default cooldown', () => {
    expect(
      nextHealth(fresh, { kind: 'rate-limited', reason: 'r', retryAfterMs: 1500 }, 100, policy, 1).state,
    ).toEqual({ kind: 'cooling', until: 1600, reason: 'r' });
    expect(
      nextHealth(fresh, { kind: 'rate-limited', reason: 'r', retryAfterMs: undefined }, 0, policy, 1).state,
    ).toMatchObject({ until: 20_000 });
  });

  it('ejects after repeated transient failures with a growing interval', () => {
    let h = fresh;
    for (let i = 0; i < 2; i++) h = nextHealth(h, { kind: 'transient', reason: '500' }, 0, policy, 2);
    expect(h.state.kind).toBe('active');
    h = nextHealth(h, { kind: 'transient', reason: '500' }, 0, policy, 2);
    expect(h.state).toMatchObject({ kind: 'cooling', until: 10_000 });
    for (let i = 0; i < 3; i++) h = nextHealth(h, { kind: 'transient', reason: '500' }, 10_000, policy, 2);
    expect(h.state).toMatchObject({ kind: 'cooling', until: 30_000 });
  });

  it('never ejects or cools the last usable key for transient errors', () => {
    let h = fresh;
    for (let i = 0; i < 10; i++) h = nextHealth(h, { kind: 'transient', reason: '500' }, 0, policy, 0);
    expect(h.state.kind).toBe('active');
    expect(
      nextHealth(fresh, { kind: 'rate-limited', reason: 'r', retryAfterMs: 1000 }, 0, policy, 0).state.kind,
    ).toBe('active');
  });

  it('recovers fully on success', () => {
    const h = nextHealth(
      { state: { kind: 'parked', reason: 'q', probeAt: 0 }, consecutiveFailures: 2, ejections: 3 },
      { kind: 'ok' },
      1,
      policy,
      0,
    );
    expect(h).toEqual(fresh);
  });

  it('knows which states may serve', () => {
    expect(isUsable({ kind: 'active' }, 0)).toBe(true);
    expect(isUsable({ kind: 'cooling', until: 10, reason: '' }, 5)).toBe(false);
    expect(isUsable({ kind: 'cooling', until: 10, reason: '' }, 10)).toBe(true);
    expect(isUsable({ kind: 'parked', reason: '', probeAt: 10 }, 11)).toBe(true);
    expect(isUsable({ kind: 'disabled', reason: '', at: 0 }, 1e15)).toBe(false);
  });
});
