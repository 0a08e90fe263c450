/**
 * OpenAI's legacy balance endpoints, which third-party clients (ChatGPT-Next-Web, LobeChat, …) still
 * call to show "used / limit": `GET /dashboard/billing/subscription` and
 * `GET /dashboard/billing/credit_grants`. Both are built from the in-memory account (fresh to the
 * request) and keep exactly OpenAI's key sets so strict clients parse them.
 *
 * Subscription: clients compute "remaining = hard_limit_usd − usage of the month" (usage from
 * /dashboard/billing/usage), so `hard_limit_usd` is what this month can still reach:
 * min(HardLimit, month cost + live balance) — remaining then equals the spendable amount, whichever
 * of the two limits binds. `system_hard_limit_usd` is the configured monthly HardLimit.
 * `soft_limit` / `hard_limit` / `system_hard_limit` are the same USD numbers (OpenAI's own unit for
 * them was never documented). `access_until` is the latest card expiry (unix seconds; 0 without cards).
 *
 * Credit grants: one grant per live card (earliest expiry first); totals over the live cards, so
 * total_available is the live balance and total_granted = total_used + total_available.
 *
 * Root (unlimited balance): limits and `total_available` report UNLIMITED_USD ($1e9, the largest
 * amount the API accepts) because these clients need numbers; `total_used` is its lifetime spend.
 * All money is in the account's own book units.
 */
import type { Account } from '../accounts/account.js';
import { liveBalance } from '../accounts/cards.js';
import { MICROS_PER_USD, microsToUsd } from '../billing/money.js';
import { liveCards, UNLIMITED_USD } from './user-info.js';

export interface BillingSubscription {
  object: 'billing_subscription';
  has_payment_method: boolean;
  canceled: boolean;
  canceled_at: null;
  delinquent: null;
  access_until: number;
  soft_limit: number;
  hard_limit: number;
  system_hard_limit: number;
  soft_limit_usd: number;
  hard_limit_usd: number;
  system_hard_limit_usd: number;
  plan: { title: string; id: string };
  account_name: string;
  po_number: null;
  billing_email: string;
  tax_ids: null;
  billing_address: null;
  business_address: null;
}

export interface CreditGrant {
  object: 'credit_grant';
  id: string;
  grant_amount: number;
  used_amount: number;
  effective_at: number;
  expires_at: number;
}

export interface CreditSummary {
  object: 'credit_summary';
  total_granted: number;
  total_used: number;
  total_available: number;
  grants: { object: 'list'; data: CreditGrant[] };
}

function unixSeconds(ms: number): number {
  return Math.floor(ms / 1000);
}

/** `account` must have had its usage windows rolled to `now` (Meter.rollWindows). */
export function billingSubscription(account: Account, now: number): BillingSubscription {
  let hard: number;
  let soft: number;
  let system: number;
  if (account.isRoot) {
    hard = soft = system = UNLIMITED_USD;
  } else {
    const reachable = account.month.cost + liveBalance(account.cards, now);
    hard = microsToUsd(Math.max(0, Math.min(account.hardLimit, reachable)));
    soft = microsToUsd(account.softLimit);
    system = microsToUsd(account.hardLimit);
  }
  let latest = 0;
  for (const c of account.cards) latest = Math.max(latest, c.expiresAt);
  return {
    object: 'billing_subscription',
    has_payment_method: false,
    canceled: false,
    canceled_at: null,
    delinquent: null,
    access_until: unixSeconds(latest),
    soft_limit: soft,
    hard_limit: hard,
    system_hard_limit: system,
    soft_limit_usd: soft,
    hard_limit_usd: hard,
    system_hard_limit_usd: system,
    plan: { title: 'ProxyXAI', id: 'proxyxai' },
    account_name: account.name,
    po_number: null,
    billing_email: account.billingEmail ?? account.email,
    tax_ids: null,
    billing_address: null,
    business_address: null,
  };
}

export function creditGrants(account: Account, now: number): CreditSummary {
  const seen = new Map<string, number>();
  let granted = 0;
  let available = 0;
  const data: CreditGrant[] = liveCards(account.cards, now).map((c) => {
    granted += c.amount;
    available += c.balance;
    // Card row ids change on every write (cards are rewritten); grant and expiry instants do not.
    const base = `cg_${account.id}_${c.grantedAt.toString(36)}_${c.expiresAt.toString(36)}`;
    const n = (seen.get(base) ?? 0) + 1;
    seen.set(base, n);
    return {
      object: 'credit_grant',
      id: n === 1 ? base : `${base}_${n}`,
      grant_amount: microsToUsd(c.amount),
      used_amount: microsToUsd(Math.max(0, c.amount - c.balance)),
      effective_at: unixSeconds(c.grantedAt),
      expires_at: unixSeconds(c.expiresAt),
    };
  });
  if (account.isRoot) {
    return {
      object: 'credit_summary',
      total_granted: microsToUsd(account.creditUsed + UNLIMITED_USD * MICROS_PER_USD),
      total_used: microsToUsd(account.creditUsed),
      total_available: UNLIMITED_USD,
      grants: { object: 'list', data },
    };
  }
  const used = Math.max(0, granted - available);
  return {
    object: 'credit_summary',
    total_granted: microsToUsd(granted),
    total_used: microsToUsd(used),
    total_available: microsToUsd(available),
    grants: { object: 'list', data },
  };
}
