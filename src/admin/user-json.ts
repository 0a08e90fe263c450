/**
 * PascalCase JSON of accounts for /x-users and /x-dna, field names as in the original (spec §3.3–3.7).
 * Money is shown as USD numbers (exact to the micro), times as ISO-8601 strings with the offset of
 * the configured TZ, as the original wrote them (`2023-10-24T18:46:12.304+08:00`; `…Z` in UTC).
 * Keys are never shown except the one-time `SecretKey` of the create response; listings show
 * `"***"`.
 */
import type { Account } from '../accounts/account.js';
import type { ChangedField } from '../accounts/account-update.js';
import { liveBalance, type Card } from '../accounts/cards.js';
import type { Calendar } from '../billing/calendar.js';
import { microsToUsd, ratesToNumber } from '../billing/money.js';

type Json = Record<string, unknown>;

/** How an instant is written (the calendar's zone); UTC ISO-8601 when none is given. */
export type TimeFormat = (epochMs: number) => string;

/** The calendar's day and month and its way of writing times (`Calendar` itself fits). */
export type JsonCalendar = Pick<Calendar, 'iso' | 'periodOf'>;

export function utcIso(epochMs: number): string {
  return new Date(epochMs).toISOString();
}

export function cardJson(card: Card, iso: TimeFormat = utcIso): Json {
  return {
    amount: microsToUsd(card.amount),
    balance: microsToUsd(card.balance),
    granted_at: iso(card.grantedAt),
    expires_at: iso(card.expiresAt),
    ...(card.reference !== undefined && { reference: card.reference }),
  };
}

function cardsJson(cards: readonly Card[], iso: TimeFormat): Json[] {
  return cards.map((c) => cardJson(c, iso));
}

/** Σ balance of the live cards; null for root, whose balance is unlimited. */
function balance(account: Account, now: number): number | null {
  return account.isRoot ? null : microsToUsd(liveBalance(account.cards, now));
}

/** null (unrestricted) is shown as ["*"], the value that sets it (spec §4.6). */
function aclJson(list: Iterable<string> | null): string[] {
  return list === null ? ['*'] : [...list];
}

function usage(window: Account['day'], current: string): Json {
  const same = window.period === current;
  return { CreditUsed: same ? microsToUsd(window.cost) : 0, Requests: same ? window.requests : 0 };
}

/** The full user object of listings and single lookups. */
export function userJson(account: Account, now: number, calendar: JsonCalendar): Json {
  const period = calendar.periodOf(now);
  const iso = (ms: number): string => calendar.iso(ms);
  return {
    ID: account.id,
    ParentID: account.parentId,
    Level: account.level,
    Name: account.name,
    Alias: account.alias,
    Email: account.email,
    BillingEmail: account.billingEmail,
    Rates: ratesToNumber(account.rates),
    CreditUsed: microsToUsd(account.creditUsed),
    CreditBalance: cardsJson(account.cards, iso),
    Balance: balance(account, now),
    CreditGranted: microsToUsd(account.creditGranted),
    HardLimit: microsToUsd(account.hardLimit),
    SoftLimit: microsToUsd(account.softLimit),
    RateLimit: account.rateLimit,
    ChildLimit: account.childLimit,
    Child: account.childCount,
    Requests: account.requests,
    Status: account.status,
    AllowIPs: aclJson(account.allowIps),
    AllowModels: aclJson(account.allowModels),
    AllowEndpoints: account.allowEndpoints === null ? [] : [...account.allowEndpoints],
    PartialKey: account.partialKey,
    SecretKey: '***',
    DailyUsage: usage(account.day, period.day),
    MonthlyUsage: usage(account.month, period.month),
    CreatedAt: iso(account.createdAt),
    UpdatedAt: iso(account.updatedAt),
  };
}

function parentJson(parent: Account, now: number, iso: TimeFormat): Json {
  return {
    ID: parent.id,
    Name: parent.name,
    Level: parent.level,
    Rates: ratesToNumber(parent.rates),
    Child: parent.childCount,
    ChildLimit: parent.childLimit,
    CreditBalance: cardsJson(parent.cards, iso),
    Balance: balance(parent, now),
    HardLimit: microsToUsd(parent.hardLimit),
    SoftLimit: microsToUsd(parent.softLimit),
    RateLimit: parent.rateLimit,
  };
}

/** `POST /x-users` answer; the only place the full key ever appears. */
export function createdJson(
  parent: Account,
  child: Account,
  key: string,
  now: number,
  iso: TimeFormat = utcIso,
): Json {
  return {
    Action: 'add',
    Parent: parentJson(parent, now, iso),
    User: {
      ID: child.id,
      Name: child.name,
      Alias: child.alias,
      SecretKey: key,
      Updates: {
        Name: child.name,
        Email: child.email,
        Level: child.level,
        Rates: ratesToNumber(child.rates),
        Child: child.childCount,
        CreditBalance: cardsJson(child.cards, iso),
        CreditGranted: microsToUsd(child.creditGranted),
        HardLimit: microsToUsd(child.hardLimit),
        SoftLimit: microsToUsd(child.softLimit),
        RateLimit: child.rateLimit,
      },
    },
  };
}

function changedJson(account: Account, field: ChangedField): unknown {
  switch (field) {
    case 'Alias':
      return account.alias;
    case 'BillingEmail':
      return account.billingEmail;
    case 'AllowIPs':
      return aclJson(account.allowIps);
    case 'AllowModels':
      return aclJson(account.allowModels);
    case 'AllowEndpoints':
      return account.allowEndpoints === null ? [] : [...account.allowEndpoints];
  }
}

/** `PUT /x-users/{ident}` answer: the caller as `Parent`, the target's state as `Updates`. */
export function updatedJson(
  caller: Account,
  target: Account,
  changed: readonly ChangedField[],
  now: number,
  iso: TimeFormat = utcIso,
): Json {
  const updates: Json = {
    Balance: balance(target, now),
    CreditBalance: cardsJson(target.cards, iso),
    CreditGranted: microsToUsd(target.creditGranted),
    ChildLimit: target.childLimit,
    Email: target.email,
    HardLimit: microsToUsd(target.hardLimit),
    Level: target.level,
    Name: target.name,
    RateLimit: target.rateLimit,
    Rates: ratesToNumber(target.rates),
    SoftLimit: microsToUsd(target.softLimit),
    Status: target.status,
  };
  for (const f of changed) updates[f] = changedJson(target, f);
  return {
    Action: 'update',
    Parent: parentJson(caller, now, iso),
    User: { ID: target.id, Name: target.name, Updates: updates },
  };
}

/**
 * `DELETE /x-users/{ident}` answer. `User.CreditBalance` shows the cards the child held at its
 * deletion (`childCards`), as the original does: their value is what came back to the parent.
 */
export function deletedJson(
  parent: Account,
  child: Account,
  childCards: readonly Card[],
  now: number,
  iso: TimeFormat = utcIso,
): Json {
  return {
    Action: 'delete',
    Parent: {
      CreditBalance: cardsJson(parent.cards, iso),
      Balance: balance(parent, now),
      ID: parent.id,
      Name: parent.name,
      Rates: ratesToNumber(parent.rates),
    },
    User: {
      CreditBalance: cardsJson(childCards, iso),
      ID: child.id,
      Name: child.name,
      Rates: ratesToNumber(child.rates),
    },
  };
}

/**
 * Adds the notices of a change to its answer: `Warnings` in the body (only when there are some,
 * so the original's shape is otherwise unchanged).
 */
export function withWarnings(json: Json, warnings: readonly string[]): Json {
  return warnings.length === 0 ? json : { ...json, Warnings: [...warnings] };
}

/** Longest `x-proxyxai-warning` header value; the body's `Warnings` has them in full. */
const MAX_WARNING_HEADER = 2000;

/**
 * The same notices as one `x-proxyxai-warning` header (none: no header). Header values are
 * Latin-1 without controls, so anything outside printable ASCII (a field name in another
 * script) is written as a `\uXXXX` escape.
 */
export function warningHeaders(warnings: readonly string[]): Record<string, string> {
  if (warnings.length === 0) return {};
  let value = warnings
    .join(' ')
    .replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (value.length > MAX_WARNING_HEADER) value = `${value.slice(0, MAX_WARNING_HEADER - 3)}...`;
  return { 'x-proxyxai-warning': value };
}
