/**
 * Money movements between a parent account and one of its children (spec §3.3, §3.6, §3.7, §4.3,
 * §4.4), as pure functions over card lists. Each operation returns the new card lists of both sides
 * plus the ledger entries that explain the change, so the storage layer can persist cards and ledger
 * in one transaction and the invariant
 *     Σ ledger amounts − expired value = live balance        (per account, exact to the micro)
 * can be checked. Nothing here reads the clock or touches storage.
 *
 * Conversions between parent and child units (`× parentRates / childRates`) round so that money is
 * never created: the payer's side is rounded up, the receiver's side down. Each conversion therefore
 * loses strictly less than one parent micro of real value ("conversion dust"), which stays with the
 * house.
 *
 * The root account's balance is unlimited (decisions.md): with `parentIsRoot` the parent's cards are
 * never touched — no debit on grants, no refund card and no fee on deducts/deletes (money taken back
 * from a child returns to the unlimited source) — and no parent ledger entry is written.
 */
import { mulDiv, type Micros, type RateMicros } from '../billing/money.js';
import {
  DEFAULT_CARD_DAYS,
  MAX_CARD_DAYS,
  REFUND_CARD_DAYS,
  DAY_MS,
  dropExpired,
  grantCard,
  liveBalance,
  mergeCards,
  rescale,
  spend,
  type Card,
} from './cards.js';

/** Fee charged to the parent for taking credit back from a child (negative `CreditGranted`). */
export const FEE_DEDUCT: Micros = 200_000;
/** Fee taken from the refund when a child is deleted. */
export const FEE_DELETE: Micros = 200_000;
/** Fee for listing all children (`GET /x-users`). */
export const FEE_LIST: Micros = 2_000;

export type LedgerAccount = 'parent' | 'child';
export type LedgerKind = 'grant' | 'deduct' | 'refund' | 'fee' | 'usage' | 'rescale';

export interface LedgerEntry {
  account: LedgerAccount;
  kind: LedgerKind;
  /** Signed, in that account's book units: + credits the account, − debits it. Never 0. */
  amount: Micros;
  note: string;
}

export interface PairInput {
  parentCards: readonly Card[];
  parentRates: RateMicros;
  childCards: readonly Card[];
  childRates: RateMicros;
  now: number;
  /** Root has an unlimited balance: its cards are left alone (see file header). Default false. */
  parentIsRoot?: boolean;
}

export interface PairOk {
  ok: true;
  parentCards: Card[];
  childCards: Card[];
  entries: LedgerEntry[];
}

export type Failure<R extends string> = { ok: false; reason: R };

function isPositiveMicros(amount: number): boolean {
  return Number.isSafeInteger(amount) && amount > 0;
}

function entry(account: LedgerAccount, kind: LedgerKind, amount: Micros, note: string): LedgerEntry[] {
  return amount === 0 ? [] : [{ account, kind, amount, note }];
}

/** Parent units needed to fund `amount` child units: rounded up, the payer never pays less than the value. */
export function parentCost(amount: Micros, parentRates: RateMicros, childRates: RateMicros): Micros {
  return mulDiv(amount, parentRates, childRates, 'ceil');
}

/** Parent units worth `amount` child units when value flows back up: rounded down, never more than the value. */
export function parentRefund(amount: Micros, parentRates: RateMicros, childRates: RateMicros): Micros {
  return mulDiv(amount, parentRates, childRates, 'floor');
}

export type GrantResult =
  (PairOk & { parentDebit: Micros }) | Failure<'invalid_amount' | 'invalid_days' | 'insufficient_balance'>;

/**
 * Recharge / initial credit (`CreditGranted` > 0): the child gets a new card of `amount` child units
 * valid `days` (0 or absent → 365, see `cardValidityMs`); the parent pays
 * `amount × parentRates / childRates` (spec §4.3) from its live cards, earliest expiry first. No fee.
 * Fails without changing anything when the parent's live balance does not cover the cost.
 */
export function grantToChild(
  input: PairInput & { amount: Micros; days?: number; reference?: string },
): GrantResult {
  const { amount, now } = input;
  if (!isPositiveMicros(amount)) return { ok: false, reason: 'invalid_amount' };
  const days = input.days ?? DEFAULT_CARD_DAYS;
  if (!Number.isFinite(days) || days < 0 || days > MAX_CARD_DAYS)
    return { ok: false, reason: 'invalid_days' };
  const debit = input.parentIsRoot === true ? 0 : parentCost(amount, input.parentRates, input.childRates);
  let parentCards = input.parentCards.map((c) => ({ ...c }));
  if (debit > 0) {
    if (liveBalance(parentCards, now) < debit) return { ok: false, reason: 'insufficient_balance' };
    parentCards = spend(parentCards, debit, now).cards;
  }
  const card = grantCard(amount, now, days, input.reference);
  return {
    ok: true,
    parentCards,
    childCards: mergeCards([...input.childCards, card], now),
    parentDebit: debit,
    entries: [
      ...entry('parent', 'grant', -debit, `granted ${amount} child units to child`),
      ...entry('child', 'grant', amount, `credit card valid ${days === 0 ? DEFAULT_CARD_DAYS : days} days`),
    ],
  };
}

export type DeductResult =
  | (PairOk & { refund: Micros; fee: Micros })
  | Failure<'invalid_amount' | 'insufficient_child_balance' | 'insufficient_balance'>;

/**
 * Takes `amount` child units back from a child (`CreditGranted` < 0). Policies:
 *  - The child's live cards are reduced earliest expiry first, the same order as spending, which also
 *    reproduces the spec example (cards 100 + 80, deduct 50 → 50 + 80).
 *  - If the child's live balance is below `amount` the call fails (`insufficient_child_balance`) and
 *    nothing changes: a partial deduct would silently report a different amount than was asked; a
 *    caller wanting "everything" passes the live balance.
 *  - The value, converted down to parent units, becomes a NEW parent card that keeps the latest expiry
 *    of the child cards it was taken from: credit moving back up neither gains nor loses lifetime
 *    (spec §4.2 saw "+300 d", which that rule explains for a card granted ~65 days earlier).
 *  - The $0.2 fee is then charged to the parent's live cards earliest expiry first (in the spec example
 *    that is the old main card, 9720 → 9719.8, as the refund card expires later). If even with the
 *    refund the parent cannot pay the fee, the call fails (`insufficient_balance`) and nothing changes.
 */
export function deductFromChild(input: PairInput & { amount: Micros }): DeductResult {
  const { amount, now } = input;
  if (!isPositiveMicros(amount)) return { ok: false, reason: 'invalid_amount' };
  if (liveBalance(input.childCards, now) < amount) return { ok: false, reason: 'insufficient_child_balance' };
  const taken = spend(input.childCards, amount, now);
  let expiresAt = now;
  taken.cards.forEach((c, i) => {
    if (c.balance !== input.childCards[i]?.balance) expiresAt = Math.max(expiresAt, c.expiresAt);
  });
  const childEntries = entry('child', 'deduct', -amount, 'credit taken back by parent');
  if (input.parentIsRoot === true) {
    const parentCards = input.parentCards.map((c) => ({ ...c }));
    return { ok: true, parentCards, childCards: taken.cards, refund: 0, fee: 0, entries: childEntries };
  }
  const refund = parentRefund(amount, input.parentRates, input.childRates);
  let parentCards = input.parentCards.map((c) => ({ ...c }));
  if (refund > 0) {
    parentCards.push({
      amount: refund,
      balance: refund,
      grantedAt: now,
      expiresAt,
      reference: 'deduct refund',
    });
  }
  if (liveBalance(parentCards, now) < FEE_DEDUCT) return { ok: false, reason: 'insufficient_balance' };
  parentCards = mergeCards(spend(parentCards, FEE_DEDUCT, now).cards, now);
  return {
    ok: true,
    parentCards,
    childCards: taken.cards,
    refund,
    fee: FEE_DEDUCT,
    entries: [
      ...childEntries,
      ...entry('parent', 'refund', refund, 'credit taken back from child'),
      ...entry('parent', 'fee', -FEE_DEDUCT, 'deduct transaction fee'),
    ],
  };
}

export type DeleteResult = PairOk & { refund: Micros; fee: Micros };

/**
 * Deleting a child (spec §3.7): its live balance, converted down to parent units, is refunded minus
 * the $0.2 fee as a new parent card valid 180 days. When the refund does not exceed the fee the whole
 * refund is kept as the fee and no card is made — the parent's existing cards are never charged, so
 * deleting an empty child costs nothing. The child ends with no cards (expired ones are dropped too:
 * they were worth nothing). Cannot fail: "has children" and similar checks belong to the caller.
 */
export function deleteChild(input: PairInput): DeleteResult {
  const { now } = input;
  const childLive = liveBalance(input.childCards, now);
  const childEntries = entry('child', 'deduct', -childLive, 'account deleted, balance refunded to parent');
  const parentCards = input.parentCards.map((c) => ({ ...c }));
  if (input.parentIsRoot === true) {
    return { ok: true, parentCards, childCards: [], refund: 0, fee: 0, entries: childEntries };
  }
  const refund = parentRefund(childLive, input.parentRates, input.childRates);
  const fee = Math.min(FEE_DELETE, refund);
  const net = refund - fee;
  if (net > 0) {
    parentCards.push({
      amount: net,
      balance: net,
      grantedAt: now,
      expiresAt: now + REFUND_CARD_DAYS * DAY_MS,
      reference: 'refund of deleted child',
    });
  }
  return {
    ok: true,
    parentCards: mergeCards(parentCards, now),
    childCards: [],
    refund,
    fee,
    entries: [
      ...childEntries,
      ...entry('parent', 'refund', refund, 'balance of deleted child'),
      ...entry('parent', 'fee', -fee, 'delete transaction fee'),
    ],
  };
}

export type FeeResult = { ok: true; cards: Card[]; entries: LedgerEntry[] } | Failure<'insufficient_balance'>;

/**
 * Charges a flat fee (e.g. FEE_LIST for listing all children) to the calling account — the "parent" of
 * the ledger entry. All or nothing: a fee is never partially collected. Root callers should skip it.
 */
export function chargeFee(cards: readonly Card[], amount: Micros, now: number): FeeResult {
  if (!Number.isSafeInteger(amount) || amount < 0) throw new RangeError('fee must be a non-negative integer');
  if (liveBalance(cards, now) < amount) return { ok: false, reason: 'insufficient_balance' };
  return {
    ok: true,
    cards: spend(cards, amount, now).cards,
    entries: entry('parent', 'fee', -amount, 'transaction fee'),
  };
}

/**
 * Settles metered usage of `cost` on an account. Never fails — the request has already run — so what
 * the live cards cannot cover is returned as `shortfall` for the caller to record; balances stay ≥ 0.
 */
export function chargeUsage(
  cards: readonly Card[],
  cost: Micros,
  now: number,
  account: LedgerAccount = 'child',
): { cards: Card[]; spent: Micros; shortfall: Micros; entries: LedgerEntry[] } {
  const r = spend(cards, cost, now);
  return { ...r, entries: entry(account, 'usage', -r.spent, 'metered usage') };
}

/**
 * A Rates change on one account (spec §3.6 `Rates`): expired cards are dropped (worth nothing, and
 * rescaling them would blur the live total), the rest rescaled by `rescale` (floor on the total).
 * The 'rescale' entry records the change of the live balance in book units — a change of unit, not of
 * value, apart from < 1 new-unit micro of rounding loss.
 */
export function rescaleAccount(input: {
  cards: readonly Card[];
  oldRates: RateMicros;
  newRates: RateMicros;
  now: number;
  account?: LedgerAccount;
}): { cards: Card[]; entries: LedgerEntry[] } {
  const live = dropExpired(input.cards, input.now);
  const cards = rescale(live, input.oldRates, input.newRates);
  const delta = liveBalance(cards, input.now) - liveBalance(live, input.now);
  return {
    cards,
    entries: entry(
      input.account ?? 'child',
      'rescale',
      delta,
      `rates ${input.oldRates} → ${input.newRates} (millionths)`,
    ),
  };
}
