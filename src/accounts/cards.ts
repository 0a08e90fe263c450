/**
 * Credit cards: the prepaid balance of an account (spec §4.2). Pure rules only — no database, no
 * clock: every function takes `now` (epoch ms) when expiry matters and returns new card arrays
 * instead of mutating its input, so the storage layer can diff old and new lists inside one
 * transaction. All money is integer micros in the account's own book units (see `Rates`, §4.3).
 *
 * Account-level movements between a parent and a child (grant, deduct, delete, fees) live in
 * `card-ops.ts`; this file holds the single-account primitives they are built from.
 */
import { mulDiv, type Micros, type RateMicros } from '../billing/money.js';

export interface Card {
  /** Storage row id; absent on cards created by these functions (new rows, incl. merged cards). */
  id?: number;
  /** Face value when granted, in the account's book units (display only once spent). */
  amount: Micros;
  /** Remaining value; 0 ≤ balance. Worth nothing once `expiresAt <= now`. */
  balance: Micros;
  grantedAt: number;
  expiresAt: number;
  reference?: string;
}

export const DAY_MS = 86_400_000;
/** Validity of a recharge card when `Days` is not given (spec §4.2). */
export const DEFAULT_CARD_DAYS = 365;
export const MAX_CARD_DAYS = 365;
/** Validity of the refund card created when a child is deleted (spec §3.7). */
export const REFUND_CARD_DAYS = 180;
/** Above this many cards an account's cards are merged (spec §4.2). */
export const MAX_CARDS = 10;
/** HardLimit defaults are multiples of $100 (spec §3.3, §4.5). */
export const HARD_LIMIT_STEP: Micros = 100_000_000;

/** A card counts only strictly before its expiry instant: at `expiresAt` it is already dead. */
export function isLive(card: Card, now: number): boolean {
  return card.expiresAt > now;
}

/** Σ balance over the cards that have not expired at `now` (spec: `Balance`). */
export function liveBalance(cards: readonly Card[], now: number): Micros {
  let total = 0;
  for (const c of cards) if (isLive(c, now)) total += c.balance;
  return total;
}

function assertMicros(amount: number, what: string): void {
  if (!Number.isSafeInteger(amount) || amount < 0)
    throw new RangeError(`${what} must be a non-negative integer`);
}

/** Spend order: earliest expiry first (decisions.md), then oldest grant, then list order — total and stable. */
function spendOrder(cards: readonly Card[]): number[] {
  return cards
    .map((_, i) => i)
    .sort((a, b) => {
      const ca = cards[a] as Card;
      const cb = cards[b] as Card;
      return ca.expiresAt - cb.expiresAt || ca.grantedAt - cb.grantedAt || a - b;
    });
}

export interface SpendResult {
  /** Same cards in the same order as the input, with balances reduced. */
  cards: Card[];
  spent: Micros;
  /** Part of the requested amount the live cards could not cover (never negative). */
  shortfall: Micros;
}

/**
 * Takes up to `amount` from the live cards, earliest expiry first, so that the credit closest to being
 * lost is used before it disappears. Expired cards are never touched (their value is already gone) and
 * no balance goes below zero; what cannot be covered is reported as `shortfall`, not taken.
 */
export function spend(cards: readonly Card[], amount: Micros, now: number): SpendResult {
  assertMicros(amount, 'spend amount');
  const out = cards.map((c) => ({ ...c }));
  let left = amount;
  for (const i of spendOrder(out)) {
    if (left === 0) break;
    const card = out[i] as Card;
    if (!isLive(card, now) || card.balance <= 0) continue;
    const take = Math.min(card.balance, left);
    card.balance -= take;
    left -= take;
  }
  return { cards: out, spent: amount - left, shortfall: left };
}

/**
 * Validity in ms for a `Days` value. Spec: float 0–365, default 365. `Days: 0` is read as "not given"
 * and yields the default: the original is a Go service where an absent JSON number decodes to 0, and
 * a card that expires the instant it is granted would only burn the parent's money.
 */
export function cardValidityMs(days: number = DEFAULT_CARD_DAYS): number {
  if (!Number.isFinite(days) || days < 0 || days > MAX_CARD_DAYS) {
    throw new RangeError(`Days must be within 0–${MAX_CARD_DAYS}`);
  }
  // Time, not money: a float here is fine; rounding to the ms keeps expiries integral, and at least
  // 1 ms so a tiny positive `Days` never yields a card that is already dead when granted.
  return Math.max(1, Math.round((days === 0 ? DEFAULT_CARD_DAYS : days) * DAY_MS));
}

/** A fresh, unspent card of `amount` valid `days` days from `now` (see `cardValidityMs` for `0`). */
export function grantCard(
  amount: Micros,
  now: number,
  days: number = DEFAULT_CARD_DAYS,
  reference?: string,
): Card {
  assertMicros(amount, 'card amount');
  const card: Card = { amount, balance: amount, grantedAt: now, expiresAt: now + cardValidityMs(days) };
  if (reference !== undefined) card.reference = reference;
  return card;
}

function combine(a: Card, b: Card): Card {
  // A merged card is a new row: constituents' ids and references are not carried over.
  return {
    amount: a.amount + b.amount,
    balance: a.balance + b.balance,
    grantedAt: Math.min(a.grantedAt, b.grantedAt),
    expiresAt: Math.max(a.expiresAt, b.expiresAt),
    reference: 'merged',
  };
}

/**
 * Keeps an account at ≤ MAX_CARDS cards (spec §4.2). Policy, applied only when there are more than
 * MAX_CARDS cards:
 *  1. Expired cards with a zero balance are dropped (they carry nothing; their face `amount` is the only
 *     thing that disappears from the totals).
 *  2. Cards are sorted by expiry and the two *adjacent* cards with the smallest expiry gap are merged,
 *     repeatedly, until ≤ MAX_CARDS remain. A merged card takes the latest expiry of its constituents
 *     (spec), so merging the nearest expiries extends the life of the earlier credit the least.
 *     Pairs of expired cards go first (gap counted as 0: nothing of value is extended).
 *  3. An expired card is never merged with a live one — the merged card would take the live expiry
 *     and bring lost money back to life.
 * Σ balance (live and expired) and Σ amount of the kept cards are preserved exactly. When merging
 * happens the result is sorted by expiry (merged cards have no id: the store inserts them as new rows).
 */
export function mergeCards(cards: readonly Card[], now: number): Card[] {
  if (cards.length <= MAX_CARDS) return cards.map((c) => ({ ...c }));
  const list = cards
    .filter((c) => isLive(c, now) || c.balance !== 0)
    .map((c) => ({ ...c }))
    .sort((a, b) => a.expiresAt - b.expiresAt || a.grantedAt - b.grantedAt);
  while (list.length > MAX_CARDS) {
    let best = -1;
    let bestGap = Infinity;
    for (let i = 0; i + 1 < list.length; i++) {
      const a = list[i] as Card;
      const b = list[i + 1] as Card;
      if (isLive(a, now) !== isLive(b, now)) continue;
      const gap = isLive(a, now) ? b.expiresAt - a.expiresAt : 0;
      if (gap < bestGap) {
        bestGap = gap;
        best = i;
      }
    }
    // Unreachable: with > MAX_CARDS (≥ 3) cards split into at most two groups, one group has a pair.
    if (best < 0) break;
    list.splice(best, 2, combine(list[best] as Card, list[best + 1] as Card));
  }
  return list;
}

/**
 * Rescales every card by newRates / oldRates on a Rates change (spec §4.3: same real value, e.g.
 * 50 + 80 at Rates 1 → 100 + 160 at Rates 2). Rounding never creates money:
 *  - the new Σ balance is floor(old Σ balance × new/old), so the account loses strictly less than one
 *    micro of its new units per rescale, and never gains;
 *  - each card gets floor(balance × new/old) and the few micros left over (fewer than the number of
 *    cards) go to the card with the latest expiry, the one that stays live the longest;
 *  - `amount` is face value (not money): floor-scaled, raised to the balance if the remainder pushed
 *    the balance above it, so `balance ≤ amount` keeps holding.
 * Callers should drop expired cards first (`rescaleAccount` does) so the total counts only live money.
 */
export function rescale(cards: readonly Card[], oldRates: RateMicros, newRates: RateMicros): Card[] {
  if (oldRates <= 0 || newRates <= 0) throw new RangeError('rates must be positive');
  if (oldRates === newRates) return cards.map((c) => ({ ...c }));
  let total = 0;
  let floored = 0;
  let latest = -1;
  const out = cards.map((c, i) => {
    total += c.balance;
    const balance = mulDiv(c.balance, newRates, oldRates, 'floor');
    floored += balance;
    if (latest < 0 || c.expiresAt >= (cards[latest] as Card).expiresAt) latest = i;
    return { ...c, amount: mulDiv(c.amount, newRates, oldRates, 'floor'), balance };
  });
  const remainder = mulDiv(total, newRates, oldRates, 'floor') - floored;
  const last = out[latest];
  if (last !== undefined) last.balance += remainder;
  for (const c of out) if (c.amount < c.balance) c.amount = c.balance;
  return out;
}

/** Drops cards that have expired at `now`, whatever their balance (their value is already lost). */
export function dropExpired(cards: readonly Card[], now: number): Card[] {
  return cards.filter((c) => isLive(c, now)).map((c) => ({ ...c }));
}

/**
 * Default monthly HardLimit for a grant: rounded UP to a multiple of $100 (100 → 100, 180 → 200,
 * 260 → 300; spec §3.3, §4.5). Integer arithmetic only.
 */
export function defaultHardLimit(grant: Micros): Micros {
  assertMicros(grant, 'grant');
  // mulDiv, not Math.ceil(grant / step): near 2^53 the float quotient can round onto an integer.
  return mulDiv(grant, 1, HARD_LIMIT_STEP, 'ceil') * HARD_LIMIT_STEP;
}

/** Default SoftLimit: 80 % of the HardLimit, rounded down to the micro. */
export function defaultSoftLimit(hardLimit: Micros): Micros {
  assertMicros(hardLimit, 'hard limit');
  return mulDiv(hardLimit, 4, 5, 'floor');
}
