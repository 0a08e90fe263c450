/**
 * PascalCase JSON of accounts for /x-users and /x-dna, field names as in the original (spec §3.3–3.7).
 * Money is shown as USD numbers (exact to the micro), times as ISO-8601 strings. Keys are never
 * shown except the one-time `SecretKey` of the create response; listings show `"***"`.
 */
import type { Account } from '../accounts/account.js';
import type { ChangedField } from '../accounts/account-update.js';
import { liveBalance, type Card } from '../accounts/cards.js';
import type { Period } from '../billing/calendar.js';
import { microsToUsd, ratesToNumber } from '../billing/money.js';

type Json = Record<string, unknown>;

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export function cardJson(card: Card): Json {
  return {
    amount: microsToUsd(card.amount),
    balance: microsToUsd(card.balance),
    granted_at: iso(card.grantedAt),
    expires_at: iso(card.expiresAt),
    ...(card.reference !== undefined && { reference: card.reference }),
  };
}

function cards(account: Account): Json[] {
  return account.cards.map(cardJson);
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
export function userJson(account: Account, now: number, period: Period): Json {
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
    CreditBalance: cards(account),
    Balance: balance(account, now),
    CreditGranted: microsToUsd(account.creditGranted),
    HardLimit: microsToUsd(account.hardLimit),
    SoftLimit: microsToUsd(account.softLimit),
    RateLimit: account.rateLimit,
    ChildLimit: account.childLimit,
    Child: account.childIds.size,
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

function parentJson(parent: Account, now: number): Json {
  return {
    ID: parent.id,
    Name: parent.name,
    Level: parent.level,
    Rates: ratesToNumber(parent.rates),
    Child: parent.childIds.size,
    ChildLimit: parent.childLimit,
    CreditBalance: cards(parent),
    Balance: balance(parent, now),
    HardLimit: microsToUsd(parent.hardLimit),
    SoftLimit: microsToUsd(parent.softLimit),
    RateLimit: parent.rateLimit,
  };
}

/** `POST /x-users` answer; the only place the full key ever appears. */
export function createdJson(parent: Account, child: Account, key: string, now: number): Json {
  return {
    Action: 'add',
    Parent: parentJson(parent, now),
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
        Child: child.childIds.size,
        CreditBalance: cards(child),
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
): Json {
  const updates: Json = {
    Balance: balance(target, now),
    CreditBalance: cards(target),
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
    Parent: parentJson(caller, now),
    User: { ID: target.id, Name: target.name, Updates: updates },
  };
}

/** `DELETE /x-users/{ident}` answer (the child's cards are gone: refunded to the parent). */
export function deletedJson(parent: Account, child: Account, now: number): Json {
  return {
    Action: 'delete',
    Parent: {
      CreditBalance: cards(parent),
      Balance: balance(parent, now),
      ID: parent.id,
      Name: parent.name,
      Rates: ratesToNumber(parent.rates),
    },
    User: {
      CreditBalance: cards(child),
      ID: child.id,
      Name: child.name,
      Rates: ratesToNumber(child.rates),
    },
  };
}
