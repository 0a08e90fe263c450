/**
 * The in-memory account: the authority for balances, reservations and counters between batched
 * writes (the store is the truth across restarts). Every mutation of an account happens
 * synchronously on this object and marks it dirty for the state writer, so memory and store can
 * never diverge in order.
 */
import type { Micros, RateMicros } from '../billing/money.js';
import type { Card } from './cards.js';
import type { IpMatcher } from './ip-matcher.js';

export interface UsageWindow {
  /** Day ("YYYY-MM-DD") or month ("YYYY-MM") in TZ this window counts. */
  period: string;
  cost: Micros;
  requests: number;
}

export interface Account {
  readonly id: number;
  readonly parentId: number | null;
  readonly isRoot: boolean;
  readonly createdAt: number;
  name: string;
  email: string;
  alias: string;
  billingEmail: string | null;
  keyHash: string;
  /** Last 20 characters of the key, shown in listings (the original's PartialKey). */
  partialKey: string;
  level: number;
  rates: RateMicros;
  rateLimit: number;
  childLimit: number;
  hardLimit: Micros;
  softLimit: Micros;
  status: boolean;
  /** IPs/CIDRs allowed to use the key; null = anyone. */
  allowIps: string[] | null;
  ipMatcher: IpMatcher | null;
  /** Models the key may use; null = all. */
  allowModels: Set<string> | null;
  /** Refused endpoint families (fine-tuning, …) an ancestor opened for this key; null = none. */
  allowEndpoints: Set<string> | null;
  creditGranted: Micros;
  creditUsed: Micros;
  requests: number;
  cards: Card[];
  /** Worst-case cost of requests in flight; released or settled when each ends. */
  reserved: Micros;
  day: UsageWindow;
  month: UsageWindow;
  softNoticeMonth: string | null;
  updatedAt: number;
  /** Direct children (kept by the sub-account API; counted from the store when loaded). */
  childCount: number;
}

/** The counters and in-memory state every newly created account starts with. */
export function freshState(period: {
  day: string;
  month: string;
}): Pick<
  Account,
  'creditUsed' | 'requests' | 'reserved' | 'day' | 'month' | 'softNoticeMonth' | 'childCount'
> {
  return {
    creditUsed: 0,
    requests: 0,
    reserved: 0,
    day: { period: period.day, cost: 0, requests: 0 },
    month: { period: period.month, cost: 0, requests: 0 },
    softNoticeMonth: null,
    childCount: 0,
  };
}
