/**
 * Credit-card domain rules (src/accounts/cards.ts, card-ops.ts): the spec §4.7 worked example as a
 * test vector, unit tests for spend order / merge / expiry / rescale / limits, and a fast-check model
 * of a parent/child pair checking exact per-account bookkeeping and system-wide money conservation.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RATE_ONE, usdToMicros, type Micros, type RateMicros } from '../../src/billing/money.js';
import {
  DAY_MS,
  defaultHardLimit,
  defaultSoftLimit,
  grantCard,
  liveBalance,
  MAX_CARDS,
  mergeCards,
  rescale,
  spend,
  type Card,
} from '../../src/accounts/cards.js';
import {
  chargeFee,
  chargeUsage,
  deductFromChild,
  deleteChild,
  FEE_DEDUCT,
  FEE_LIST,
  grantToChild,
  parentCost,
  rescaleAccount,
  type LedgerEntry,
} from '../../src/accounts/card-ops.js';

const T0 = Date.UTC(2024, 0, 1);
const usd = usdToMicros;
const card = (balance: Micros, expiresAt: number, amount: Micros = balance): Card => ({
  amount,
  balance,
  grantedAt: T0,
  expiresAt,
});
const sum = (entries: readonly LedgerEntry[], account: 'parent' | 'child'): Micros =>
  entries.filter((e) => e.account === account).reduce((s, e) => s + e.amount, 0);

function ok<T extends { ok: boolean }>(r: T): Extract<T, { ok: true }> {
  if (!r.ok) throw new Error(`expected ok, got ${JSON.stringify(r)}`);
  return r as Extract<T, { ok: true }>;
}

describe('spec §4.7 worked example', () => {
  it('reproduces every step', () => {
    const R1 = RATE_ONE;
    let now = T0 + DAY_MS;
    let beta: Card[] = [grantCard(usd(10000), T0)];
    let child1: Card[] = [];
    let child2: Card[] = [];
    const pair = () => ({ parentCards: beta, parentRates: R1, childCards: child1, childRates: R1, now });

    // 1. create child-1 with 100: no fee on creation.
    let g = ok(grantToChild({ ...pair(), amount: usd(100) }));
    [beta, child1] = [g.parentCards, g.childCards];
    expect(beta.map((c) => c.balance)).toEqual([usd(9900)]);
    expect(child1).toMatchObject([{ amount: usd(100), balance: usd(100), expiresAt: now + 365 * DAY_MS }]);
    expect(defaultHardLimit(usd(100))).toBe(usd(100));
    expect(defaultSoftLimit(usd(100))).toBe(usd(80));

    // 2. child-2 with 100, then recharge child-1 with 80 (one day later, so its cards expire apart).
    g = ok(grantToChild({ ...pair(), childCards: child2, amount: usd(100) }));
    [beta, child2] = [g.parentCards, g.childCards];
    expect(liveBalance(beta, now)).toBe(usd(9800));
    now += DAY_MS;
    g = ok(grantToChild({ ...pair(), amount: usd(80) }));
    [beta, child1] = [g.parentCards, g.childCards];
    expect(beta.map((c) => c.balance)).toEqual([usd(9720)]);
    expect(child1.map((c) => [c.amount, c.balance])).toEqual([
      [usd(100), usd(100)],
      [usd(80), usd(80)],
    ]);
    expect(defaultHardLimit(liveBalance(child1, now))).toBe(usd(200)); // §4.5: 180 → 200

    // 3. Deduct 50. Doc quirks: the curl sends -10 but the response shows -50, and the response still
    // reports child Balance 180. We follow the response's -50, the only amount consistent with the later
    // steps (100/50 card, and 260 = 2 × (50 + 80) after the rescale); Balance 180 is the pre-deduct
    // balance echoed back, the live balance afterwards is 130 (again confirmed by step 4).
    const d = ok(deductFromChild({ ...pair(), amount: usd(50) }));
    [beta, child1] = [d.parentCards, d.childCards];
    expect(child1.map((c) => [c.amount, c.balance])).toEqual([
      [usd(100), usd(50)],
      [usd(80), usd(80)],
    ]);
    expect(liveBalance(child1, now)).toBe(usd(130));
    // The fee hits the old main card (earliest expiry); the refund card keeps the child card's expiry.
    expect(beta.map((c) => [c.amount, c.balance])).toEqual([
      [usd(10000), usd(9719.8)],
      [usd(50), usd(50)],
    ]);
    expect(beta[1]?.expiresAt).toBe(T0 + DAY_MS + 365 * DAY_MS);
    expect(liveBalance(beta, now)).toBe(usd(9769.8));
    expect(d.fee).toBe(FEE_DEDUCT);

    // 4. child-1 Rates 1 → 2: same real value, doubled book values.
    const r = rescaleAccount({ cards: child1, oldRates: R1, newRates: 2 * R1, now });
    child1 = r.cards;
    expect(child1.map((c) => [c.amount, c.balance])).toEqual([
      [usd(200), usd(100)],
      [usd(160), usd(160)],
    ]);
    expect(liveBalance(child1, now)).toBe(usd(260));
    expect(defaultHardLimit(liveBalance(child1, now))).toBe(usd(300));

    // 5. Delete child-1: 260 / 2 = 130 refunded minus 0.2 as a 180-day card.
    const del = deleteChild({ ...pair(), childRates: 2 * R1 });
    expect(del.childCards).toEqual([]);
    expect(del.parentCards[2]).toMatchObject({
      amount: usd(129.8),
      balance: usd(129.8),
      expiresAt: now + 180 * DAY_MS,
    });
    expect(liveBalance(del.parentCards, now)).toBe(usd(9769.8 + 129.8));
    expect(sum(del.entries, 'parent')).toBe(usd(129.8));
  });
});

describe('cards', () => {
  it('spends earliest expiry first, skips expired cards, reports shortfall, keeps order', () => {
    const now = T0;
    const cards = [card(50, now + 3), card(10, now + 1), card(99, now), card(20, now + 2)];
    const a = spend(cards, 25, now);
    expect(a.cards.map((c) => c.balance)).toEqual([50, 0, 99, 5]);
    expect([a.spent, a.shortfall]).toEqual([25, 0]);
    const b = spend(cards, 100, now);
    expect(b.cards.map((c) => c.balance)).toEqual([0, 0, 99, 0]); // the expired card (at now) is untouched
    expect([b.spent, b.shortfall]).toEqual([80, 20]);
    expect(cards[0]?.balance).toBe(50); // input not mutated
    expect(() => spend(cards, -1, now)).toThrow(RangeError);
  });

  it('values expired cards at nothing', () => {
    const cards = [card(5, T0 + 10), card(7, T0 + 20)];
    expect(liveBalance(cards, T0 + 9)).toBe(12);
    expect(liveBalance(cards, T0 + 10)).toBe(7); // expiresAt == now is already dead
    expect(liveBalance(cards, T0 + 20)).toBe(0);
  });

  it('grants cards with the documented validity', () => {
    expect(grantCard(5, T0).expiresAt).toBe(T0 + 365 * DAY_MS);
    expect(grantCard(5, T0, 0).expiresAt).toBe(T0 + 365 * DAY_MS); // 0 = "not given"
    expect(grantCard(5, T0, 0.5)).toEqual({
      amount: 5,
      balance: 5,
      grantedAt: T0,
      expiresAt: T0 + DAY_MS / 2,
    });
    expect(() => grantCard(5, T0, 365.5)).toThrow(RangeError);
    expect(() => grantCard(1.5, T0)).toThrow(RangeError);
  });

  it('merges the nearest expiries, keeping the latest expiry and the totals', () => {
    const days = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10.5, 20];
    const cards = days.map((d, i) => card(i + 1, T0 + d * DAY_MS, 100));
    const merged = mergeCards(cards, T0);
    expect(merged).toHaveLength(MAX_CARDS);
    // (10, 10.5) has the smallest gap; then all gaps tie at 1 day and the earliest pair (1, 2) goes.
    expect(merged.map((c) => c.expiresAt / DAY_MS - T0 / DAY_MS)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10.5, 20]);
    expect(merged[0]).toMatchObject({ amount: 200, balance: 3, reference: 'merged' });
    expect(merged[8]).toMatchObject({ amount: 200, balance: 21 });
    expect(merged.reduce((s, c) => s + c.balance, 0)).toBe(78);
    expect(mergeCards(cards.slice(0, 10), T0)).toEqual(cards.slice(0, 10)); // ≤ 10: untouched
  });

  it('drops expired empty cards and never merges expired with live cards', () => {
    const now = T0 + 100;
    const expired = [card(0, T0 + 1), card(0, T0 + 2), card(4, T0 + 3), card(6, T0 + 4)];
    const live = Array.from({ length: 9 }, (_, i) => card(1, now + 1 + i));
    const merged = mergeCards([...expired, ...live], now);
    expect(merged).toHaveLength(10);
    expect(merged[0]).toMatchObject({ balance: 10, expiresAt: T0 + 4 }); // the two expired cards together
    expect(liveBalance(merged, now)).toBe(9);
  });

  it('rescales without creating money, remainder on the latest-expiry card', () => {
    const cards = [card(50, T0 + 1, 100), card(80, T0 + 2)];
    expect(rescale(cards, RATE_ONE, 2 * RATE_ONE).map((c) => [c.amount, c.balance])).toEqual([
      [200, 100],
      [160, 160],
    ]);
    // 3 × 1 micro at Rates 3 → Rates 1: floor(3 / 3) = 1 in total, placed on the latest card.
    const thirds = [card(1, T0 + 3), card(1, T0 + 9), card(1, T0 + 5)];
    expect(rescale(thirds, 3 * RATE_ONE, RATE_ONE).map((c) => [c.amount, c.balance])).toEqual([
      [0, 0],
      [1, 1],
      [0, 0],
    ]);
  });

  it('computes default limits', () => {
    expect([100, 180, 260].map((x) => defaultHardLimit(usd(x)))).toEqual([100, 200, 300].map(usd));
    expect(defaultHardLimit(usd(100) + 1)).toBe(usd(200));
    expect(defaultHardLimit(0)).toBe(0);
    expect(defaultSoftLimit(usd(300))).toBe(usd(240));
  });
});

describe('account operations', () => {
  const now = T0;
  const base = { parentRates: RATE_ONE, childRates: 3 * RATE_ONE, now };

  it('grant: parent pays the rates-converted cost rounded up, or fails untouched', () => {
    const g = ok(grantToChild({ ...base, parentCards: [card(10, now + 9)], childCards: [], amount: 1 }));
    expect(g.parentDebit).toBe(1); // ceil(1 / 3)
    expect(g.parentCards[0]?.balance).toBe(9);
    expect(grantToChild({ ...base, parentCards: [card(10, now + 9)], childCards: [], amount: 31 })).toEqual({
      ok: false,
      reason: 'insufficient_balance',
    });
    expect(grantToChild({ ...base, parentCards: [], childCards: [], amount: 0 })).toMatchObject({
      ok: false,
    });
    expect(grantToChild({ ...base, parentCards: [], childCards: [], amount: 5, days: 400 })).toMatchObject({
      reason: 'invalid_days',
    });
  });

  it('deduct: all or nothing on the child, fee all or nothing on the parent', () => {
    const childCards = [card(usd(3), now + 10)];
    const input = { ...base, childRates: RATE_ONE, childCards };
    expect(deductFromChild({ ...input, parentCards: [], amount: usd(3) + 1 })).toEqual({
      ok: false,
      reason: 'insufficient_child_balance',
    });
    // Refund 0.1 + nothing else cannot pay the 0.2 fee.
    expect(deductFromChild({ ...input, parentCards: [], amount: usd(0.1) })).toEqual({
      ok: false,
      reason: 'insufficient_balance',
    });
    const d = ok(deductFromChild({ ...input, parentCards: [], amount: usd(1) }));
    expect(d.parentCards).toMatchObject([{ amount: usd(1), balance: usd(0.8), expiresAt: now + 10 }]);
  });

  it('delete: refund not above the fee leaves no card and no debt', () => {
    const del = deleteChild({
      ...base,
      childRates: RATE_ONE,
      parentCards: [],
      childCards: [card(usd(0.15), now + 5)],
    });
    expect([del.parentCards, del.refund, del.fee]).toEqual([[], usd(0.15), usd(0.15)]);
  });

  it('root: unlimited balance, no parent cards touched and no parent entries', () => {
    const root = { ...base, parentCards: [] as Card[], parentIsRoot: true };
    const g = ok(grantToChild({ ...root, childCards: [], amount: usd(500) }));
    expect(g.parentCards).toEqual([]);
    const d = ok(deductFromChild({ ...root, childCards: g.childCards, amount: usd(100) }));
    const del = deleteChild({ ...root, childCards: d.childCards });
    for (const r of [g, d, del]) {
      expect(r.parentCards).toEqual([]);
      expect(r.entries.every((e) => e.account === 'child')).toBe(true);
    }
  });

  it('fees and usage', () => {
    expect(chargeFee([card(FEE_LIST - 1, now + 1)], FEE_LIST, now)).toEqual({
      ok: false,
      reason: 'insufficient_balance',
    });
    expect(ok(chargeFee([card(FEE_LIST, now + 1)], FEE_LIST, now)).cards[0]?.balance).toBe(0);
    const u = chargeUsage([card(5, now + 1)], 8, now);
    expect([u.spent, u.shortfall, u.entries[0]?.amount]).toEqual([5, 3, -5]);
  });
});

// ---- Model-based property test -----------------------------------------------------------------

const RATES: RateMicros[] = [1_000_000, 1_200_000, 1_500_000, 2_000_000, 2_500_000, 3_000_000];
const gcd = (a: bigint, b: bigint): bigint => (b === 0n ? a : gcd(b, a % b));
/** Common denominator: real value of x book micros at rates R is x × (D / R) / D, exact in BigInt. */
const D = RATES.map(BigInt).reduce((l, r) => (l * r) / gcd(l, r));
const real = (x: Micros, rates: RateMicros): bigint => BigInt(x) * (D / BigInt(rates));

type Cmd =
  | { op: 'grant'; amount: number; days: number }
  | { op: 'deduct'; amount: number }
  | { op: 'rates'; index: number }
  | { op: 'spend'; who: 'parent' | 'child'; amount: number }
  | { op: 'advance'; ms: number }
  | { op: 'listFee' }
  | { op: 'delete' };

const amountArb = fc.oneof(fc.integer({ min: 1, max: 5_000 }), fc.integer({ min: 1, max: 80_000_000 }));
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('grant' as const),
      amount: amountArb,
      days: fc.oneof(fc.constantFrom(0, 1, 30, 365), fc.double({ min: 0, max: 365, noNaN: true })),
    }),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('deduct' as const), amount: amountArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('rates' as const), index: fc.nat(RATES.length - 1) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('spend' as const),
      who: fc.constantFrom('parent' as const, 'child' as const),
      amount: amountArb,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('advance' as const),
      ms: fc.oneof(fc.integer({ min: 0, max: 400 * DAY_MS }), fc.integer({ min: 0, max: 1000 })),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('listFee' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const) }) },
);

interface Acct {
  cards: Card[];
  rates: RateMicros;
  ledger: Micros; // Σ signed ledger entries
  expired: Micros; // Σ value lost to expiry, in book units at the time it expired
}

describe('property: parent/child money model', () => {
  it('keeps exact books, non-negative cards, ≤ 10 cards, and conserves money up to conversion dust', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2_000_000_000 }),
        fc.nat(2),
        fc.array(cmdArb, { minLength: 1, maxLength: 80, size: 'max' }),
        (initial, parentRateIx, cmds) => {
          let now = T0;
          const parentRates = RATES[parentRateIx] as RateMicros;
          const parent: Acct = {
            cards: [grantCard(initial, now)],
            rates: parentRates,
            ledger: initial,
            expired: 0,
          };
          const child: Acct = { cards: [], rates: parentRates, ledger: 0, expired: 0 };
          const start = real(initial, parentRates);
          let sinks = 0n; // real value of fees + usage + expired
          let dustBound = 0n; // each conversion may lose < 1 micro of its target units
          const apply = (entries: readonly LedgerEntry[]) => {
            for (const e of entries) {
              const acct = e.account === 'parent' ? parent : child;
              acct.ledger += e.amount;
              if (e.kind === 'fee' || e.kind === 'usage') sinks -= real(e.amount, acct.rates);
            }
          };
          const pair = () => ({
            parentCards: parent.cards,
            parentRates: parent.rates,
            childCards: child.cards,
            childRates: child.rates,
            now,
          });

          for (const cmd of cmds) {
            const pLive = liveBalance(parent.cards, now);
            const cLive = liveBalance(child.cards, now);
            switch (cmd.op) {
              case 'grant': {
                const r = grantToChild({ ...pair(), amount: cmd.amount, days: cmd.days });
                if (!r.ok) {
                  expect(r.reason).toBe('insufficient_balance');
                  expect(pLive).toBeLessThan(parentCost(cmd.amount, parent.rates, child.rates));
                  break;
                }
                [parent.cards, child.cards] = [r.parentCards, r.childCards];
                apply(r.entries);
                dustBound += D / BigInt(parent.rates);
                break;
              }
              case 'deduct': {
                const r = deductFromChild({ ...pair(), amount: cmd.amount });
                if (!r.ok) {
                  expect(r.reason).toBe(
                    cLive < cmd.amount ? 'insufficient_child_balance' : 'insufficient_balance',
                  );
                  break;
                }
                [parent.cards, child.cards] = [r.parentCards, r.childCards];
                apply(r.entries);
                dustBound += D / BigInt(parent.rates);
                break;
              }
              case 'rates': {
                // Spec: a child's Rates can only be ≥ its parent's.
                const newRates = Math.max(RATES[cmd.index] as RateMicros, parent.rates);
                const r = rescaleAccount({ cards: child.cards, oldRates: child.rates, newRates, now });
                // Dropping expired cards loses nothing live; the rescale entry covers the unit change.
                child.cards = r.cards;
                apply(r.entries);
                child.rates = newRates;
                dustBound += D / BigInt(newRates);
                break;
              }
              case 'spend': {
                const acct = cmd.who === 'parent' ? parent : child;
                const r = chargeUsage(acct.cards, cmd.amount, now, cmd.who);
                expect(r.spent + r.shortfall).toBe(cmd.amount);
                expect(r.spent).toBe(Math.min(cmd.amount, liveBalance(acct.cards, now)));
                acct.cards = r.cards;
                apply(r.entries);
                break;
              }
              case 'advance': {
                const next = now + cmd.ms;
                for (const acct of [parent, child]) {
                  // Track expiry explicitly: cards crossing the boundary lose their whole balance.
                  const lost = acct.cards
                    .filter((c) => c.expiresAt > now && c.expiresAt <= next)
                    .reduce((s, c) => s + c.balance, 0);
                  acct.expired += lost;
                  sinks += real(lost, acct.rates);
                }
                now = next;
                break;
              }
              case 'listFee': {
                const r = chargeFee(parent.cards, FEE_LIST, now);
                if (!r.ok) {
                  expect(pLive).toBeLessThan(FEE_LIST);
                  break;
                }
                parent.cards = r.cards;
                apply(r.entries);
                break;
              }
              case 'delete': {
                const r = deleteChild(pair());
                [parent.cards, child.cards] = [r.parentCards, r.childCards];
                apply(r.entries);
                dustBound += D / BigInt(parent.rates);
                break;
              }
            }

            for (const acct of [parent, child]) {
              expect(acct.ledger - acct.expired).toBe(liveBalance(acct.cards, now));
              expect(acct.cards.length).toBeLessThanOrEqual(MAX_CARDS);
              for (const c of acct.cards) {
                expect(Number.isSafeInteger(c.balance) && c.balance >= 0 && c.balance <= c.amount).toBe(true);
              }
            }
            const held =
              real(liveBalance(parent.cards, now), parent.rates) +
              real(liveBalance(child.cards, now), child.rates);
            const dust = start - held - sinks;
            expect(dust >= 0n).toBe(true); // no money is ever created
            expect(dust === 0n || dust < dustBound).toBe(true);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
