/**
 * `GET /dashboard/x_user/info` (spec §3.8): the caller's own account as the balance page reads it.
 * Built from the in-memory account only, so it is fresh to the request (decisions.md "Fresh read
 * models"): every settled request is already in `creditUsed`, the cards and the usage windows.
 *
 * Shape decisions:
 *  - snake_case top level, PascalCase inside `daily_usage` / `monthly_usage` (as the original);
 *  - money in the account's own book units as USD numbers, dates as ISO-8601 strings with the
 *    offset of the configured TZ (as the original wrote them);
 *  - `credit_balance` lists only the cards still live at `now` (an expired card's value is lost),
 *    earliest expiry first, so Σ credit_balance[].balance = `balance` (except for root);
 *  - `unlimited` (extension) is true for the root account, whose balance is not metered. Its
 *    `balance`, `hard_limit` and `soft_limit` are then UNLIMITED_USD ($1e9, the largest amount
 *    the API accepts), as on the OpenAI-style billing endpoints: the original's balance page calls
 *    `.toFixed` on them and showed any other value (null) as "unauthorised or suspended".
 */
import type { Account } from '../accounts/account.js';
import { isLive, liveBalance, type Card } from '../accounts/cards.js';
import type { Calendar } from '../billing/calendar.js';
import { MAX_USD, microsToUsd, ratesToNumber } from '../billing/money.js';

/** What "unlimited" reads as where the original's pages and OpenAI-style clients need a number. */
export const UNLIMITED_USD = MAX_USD;

export interface CardView {
  amount: number;
  balance: number;
  granted_at: string;
  expires_at: string;
}

export interface UsageView {
  CreditUsed: number;
  Requests: number;
}

export interface UserInfo {
  id: number;
  level: number;
  child: number;
  name: string;
  alias: string;
  email: string;
  create_at: string;
  credit_balance: CardView[];
  credit_used: number;
  balance: number;
  unlimited: boolean;
  daily_usage: UsageView;
  monthly_usage: UsageView;
  hard_limit: number;
  soft_limit: number;
  rate_limit: number;
  rates: number;
  status: boolean;
}

/** The live cards of an account at `now`, earliest expiry first (the order they are spent in). */
export function liveCards(cards: readonly Card[], now: number): Card[] {
  return cards
    .filter((c) => isLive(c, now))
    .sort((a, b) => a.expiresAt - b.expiresAt || a.grantedAt - b.grantedAt);
}

/** `account` must have had its usage windows rolled to `now` (Meter.rollWindows). */
export function userInfo(account: Account, now: number, calendar: Pick<Calendar, 'iso'>): UserInfo {
  const unlimited = account.isRoot;
  const iso = (ms: number): string => calendar.iso(ms);
  return {
    id: account.id,
    level: account.level,
    child: account.childCount,
    name: account.name,
    alias: account.alias,
    email: account.email,
    create_at: iso(account.createdAt),
    credit_balance: liveCards(account.cards, now).map((c) => ({
      amount: microsToUsd(c.amount),
      balance: microsToUsd(c.balance),
      granted_at: iso(c.grantedAt),
      expires_at: iso(c.expiresAt),
    })),
    credit_used: microsToUsd(account.creditUsed),
    balance: unlimited ? UNLIMITED_USD : microsToUsd(liveBalance(account.cards, now)),
    unlimited,
    daily_usage: { CreditUsed: microsToUsd(account.day.cost), Requests: account.day.requests },
    monthly_usage: { CreditUsed: microsToUsd(account.month.cost), Requests: account.month.requests },
    hard_limit: unlimited ? UNLIMITED_USD : microsToUsd(account.hardLimit),
    soft_limit: unlimited ? UNLIMITED_USD : microsToUsd(account.softLimit),
    rate_limit: account.rateLimit,
    rates: ratesToNumber(account.rates),
    status: account.status,
  };
}
