// The meter over a purse that must ask for more credit (the cluster's leases) and a rate limiter
// that answers later (the cluster's): the same gates, refusals and reservations as one process,
// and never a reservation past what the purse holds, even when requests overlap the waits.
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { Account } from '../../src/accounts/account.js';
import { newRootAccount } from '../../src/accounts/load-accounts.js';
import { RateLimiter, type Limiter, type RateDecision } from '../../src/accounts/rate-limiter.js';
import { Calendar } from '../../src/billing/calendar.js';
import { Meter, type Admission } from '../../src/billing/meter.js';
import { RATE_ONE } from '../../src/billing/money.js';
import { loadPriceTable } from '../../src/billing/price-table.js';
import type { Purse, Shortfall } from '../../src/billing/purse.js';
import type { ParsedRequest } from '../../src/proxy/parse-request.js';
import { StateWriter } from '../../src/store/state-writer.js';

const prices = loadPriceTable(new URL('../../config/prices.json', import.meta.url).pathname);
const log = pino({ level: 'silent' });

/** A lease-like purse: `held` is spendable here; top-ups take from `pool` after a tick. */
class TestPurse implements Purse {
  readonly canTopUp = true;
  held = 0;
  spent = 0;
  topUps: number[] = [];
  constructor(
    public pool: number,
    private readonly bound: Shortfall = 'balance',
  ) {}
  available(account: Account): number {
    return this.held - this.spent - account.reserved;
  }
  take(_account: Account, cost: number): number {
    const taken = Math.min(cost, this.held - this.spent);
    this.spent += taken;
    return taken;
  }
  async topUp(account: Account, want: number): Promise<Shortfall | undefined> {
    this.topUps.push(want);
    await new Promise((r) => setTimeout(r, 1));
    const grant = Math.min(want, this.pool);
    this.pool -= grant;
    this.held += grant;
    return this.available(account) >= want ? undefined : this.bound;
  }
}

/** The in-memory limiter, answering one tick later like a Redis round trip. */
class SlowLimiter implements Limiter {
  private readonly inner = new RateLimiter();
  check(id: number, rpm: number, now: number): Promise<RateDecision> {
    return new Promise((r) => setTimeout(() => r(this.inner.check(id, rpm, now)), 1));
  }
  forget(id: number): void {
    this.inner.forget(id);
  }
}

function account(): Account {
  const now = Date.now();
  return {
    ...newRootAccount(9, 'a@example.com', 'hash', 'partial', now, new Calendar('UTC').periodOf(now)),
    isRoot: false,
    name: 'leased',
    rates: RATE_ONE,
    hardLimit: 1_000_000_000,
    rateLimit: 1_000,
  };
}

function meter(purse: Purse, limiter: Limiter = new RateLimiter()): Meter {
  const writer = new StateWriter({ write: () => Promise.resolve() }, log, {
    flushIntervalMs: 1000,
    statsInterval: 1000,
  });
  return new Meter(prices, new Calendar('UTC'), limiter, writer, { maxOutputTokensCap: 1000, purse });
}

const chat = (maxTokens: number): ParsedRequest => {
  const json = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: maxTokens };
  return {
    model: 'gpt-4o-mini',
    stream: false,
    json,
    body: Buffer.from(JSON.stringify(json)),
    stripUsageChunk: false,
    multipart: false,
  };
};

async function admit(m: Meter, a: Account, req: ParsedRequest): Promise<Admission> {
  return m.admit(a, '/v1/chat/completions', req, '127.0.0.1', `req_${Math.random()}`);
}

describe('Meter over a purse that tops up', () => {
  it('asks for the $1 floor or the worst case, whichever is more, then reserves it', async () => {
    const purse = new TestPurse(50_000_000);
    const m = meter(purse);
    const a = account();
    const r = await admit(m, a, chat(100_000));
    expect(r.ok).toBe(true);
    // 100k output tokens at $0.60/M = $0.06 < $1: the floor is what was asked for.
    expect(purse.topUps).toEqual([1_000_000]);
    expect(a.reserved).toBeGreaterThan(0);
    expect(a.reserved).toBeLessThanOrEqual(purse.held);
  });

  it('refuses with insufficient_balance, or hard_limit_reached when the HardLimit bounded the top-up', async () => {
    const a = account();
    expect(await admit(meter(new TestPurse(500_000)), a, chat(10))).toMatchObject({
      ok: false,
      error: { status: 402, code: 'insufficient_quota', errorName: 'insufficient_balance' },
    });
    expect(await admit(meter(new TestPurse(500_000, 'hard-limit')), account(), chat(10))).toMatchObject({
      ok: false,
      error: { errorName: 'hard_limit_reached' },
    });
    expect(await admit(meter(new TestPurse(0, 'store')), account(), chat(10))).toMatchObject({
      ok: false,
      error: { status: 503, code: 'store_unavailable' },
    });
  });

  it('never reserves past the purse when many requests overlap the waits', async () => {
    // $3 in all: each request reserves ~$0.6 (1M output tokens), so at most 4 of 20 fit ($1 floor).
    const purse = new TestPurse(3_000_000);
    const m = meter(purse, new SlowLimiter());
    const a = account();
    const results = await Promise.all(Array.from({ length: 20 }, () => admit(m, a, chat(1_000_000))));
    const admitted = results.filter((r) => r.ok);
    expect(admitted.length).toBeGreaterThan(0);
    expect(a.reserved).toBeLessThanOrEqual(purse.held - purse.spent);
    expect(a.reserved).toBe(admitted.reduce((s, r) => s + (r.ok ? r.ticket.reserved : 0), 0));
    for (const r of results) if (!r.ok) expect(r.error.errorName).toBe('insufficient_balance');
    // Settling takes no more than the purse holds, and releases every reservation.
    for (const r of admitted) {
      if (!r.ok) continue;
      m.settle(r.ticket, {
        kind: 'relayed',
        status: 200,
        end: 'completed',
        attempts: 1,
        deliveredText: '',
        usage: { promptTokens: 10, cachedTokens: 0, completionTokens: 10 },
      });
    }
    expect(a.reserved).toBe(0);
    expect(purse.spent).toBeLessThanOrEqual(purse.held);
  });

  it('keeps the RPM gate exact behind a limiter that answers later', async () => {
    const purse = new TestPurse(1_000_000_000);
    const m = meter(purse, new SlowLimiter());
    const a = { ...account(), rateLimit: 5 };
    const results = await Promise.all(Array.from({ length: 9 }, () => admit(m, a, chat(10))));
    expect(results.filter((r) => r.ok)).toHaveLength(5);
    expect(results.filter((r) => !r.ok).map((r) => (r.ok ? '' : r.error.code))).toEqual(
      Array.from({ length: 4 }, () => 'rate_limit_exceeded'),
    );
  });
});
