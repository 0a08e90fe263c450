/**
 * Domain operations of the sub-account API (spec §3.3–3.7): creating, deleting and finding
 * accounts in the tree, and charging the listing fee. Each operation validates everything first,
 * then mutates memory synchronously (no await anywhere), marks the accounts dirty and queues the
 * ledger rows; the caller awaits the state writer's flush before answering. Failures are returned
 * as values (a GatewayError from the one catalogue), never half-applied.
 *
 * Updates (`PUT`) live in `account-update.ts`.
 */
import type { Calendar } from '../billing/calendar.js';
import type { Micros, RateMicros } from '../billing/money.js';
import { microsToUsd, ratesToNumber } from '../billing/money.js';
import { GatewayError, type ErrorName } from '../errors/catalogue.js';
import { generateAccountKey, type Secrets } from '../keys/secrets.js';
import { freshState, type Account } from './account.js';
import type { AccountLoader } from './account-loader.js';
import type { AccountDirectory, AccountWrites } from './account-unit.js';
import { FEE_LIST, chargeFee, deleteChild, grantToChild, parentCost, type LedgerEntry } from './card-ops.js';
import { defaultHardLimit, defaultSoftLimit, liveBalance, type Card } from './cards.js';
import type { Limiter } from './rate-limiter.js';

/** `ChildLimit` of a new account (the original's default). */
export const DEFAULT_CHILD_LIMIT = 88_888_888;

export interface ServiceDeps {
  readonly registry: AccountDirectory;
  readonly writer: AccountWrites;
  readonly secrets: Secrets;
  readonly calendar: Calendar;
  readonly limiter: Limiter;
  readonly config: { readonly userMinBalance: Micros; readonly userApiMinBalance: Micros };
}

export type Failure = { ok: false; error: GatewayError };
export type Result<T extends object> = ({ ok: true } & T) | Failure;

export function fail(name: ErrorName, message?: string, param: string | null = null): Failure {
  return { ok: false, error: new GatewayError(name, message, param) };
}

export function usd(micros: Micros): string {
  return `$${microsToUsd(micros)}`;
}

/** What an account can pay right now: live cards minus in-flight reservations; root is unlimited. */
export function availableBalance(account: Account, now: number): Micros {
  if (account.isRoot) return Number.MAX_SAFE_INTEGER;
  return liveBalance(account.cards, now) - account.reserved;
}

/** Sub-account API rights need a live balance above USER_API_MIN_BALANCE (root always has them). */
export function checkApiAccess(
  deps: Pick<ServiceDeps, 'config'>,
  caller: Account,
  now: number,
): Failure | undefined {
  if (caller.isRoot) return undefined;
  const balance = liveBalance(caller.cards, now);
  if (balance > deps.config.userApiMinBalance) return undefined;
  return fail(
    'api_balance_too_low',
    `The sub-account API needs a balance above ${usd(deps.config.userApiMinBalance)}; yours is ${usd(balance)}.`,
  );
}

/** Queues one ledger row per entry: 'parent' entries belong to `payer`, 'child' entries to `target`. */
export function recordLedger(
  writer: AccountWrites,
  entries: readonly LedgerEntry[],
  payer: Account,
  target: Account,
  now: number,
): void {
  for (const e of entries) {
    writer.addLedger({
      account_id: e.account === 'parent' ? payer.id : target.id,
      kind: e.kind,
      amount: e.amount,
      note: e.note,
      request_id: null,
      created_at: now,
    });
  }
}

/**
 * 409 when `name` or `email` belongs to an account other than `self`, in any case or normal form
 * (the store's folded columns compare their `foldKey`s: `测试账号`, `José` = `JOSÉ`, `ΟΔΟΣ` = `οδοσ`).
 */
export function uniquenessProblem(
  registry: Pick<AccountDirectory, 'findByName' | 'findByEmail'>,
  wanted: { readonly name?: string | undefined; readonly email?: string | undefined },
  self?: Account,
): Failure | undefined {
  if (wanted.name !== undefined) {
    const other = registry.findByName(wanted.name);
    if (other !== undefined && other !== self && other.id !== self?.id)
      return fail('duplicate', `The name "${wanted.name}" is already taken.`, 'Name');
  }
  if (wanted.email !== undefined) {
    const other = registry.findByEmail(wanted.email);
    if (other !== undefined && other !== self && other.id !== self?.id)
      return fail('duplicate', `The e-mail "${wanted.email}" is already used by another account.`, 'Email');
  }
  return undefined;
}

export type Scope = 'child' | 'descendant';

/** True when `account` is a direct child (scope 'child') or any descendant of `caller`. */
export async function inScope(
  accounts: AccountLoader,
  caller: Account,
  account: Account,
  scope: Scope,
): Promise<boolean> {
  return scope === 'child' ? account.parentId === caller.id : accounts.isAncestor(caller, account);
}

/**
 * The account a PUT or DELETE addresses. PUT reaches any descendant (and the caller itself, for the
 * few self-service fields); DELETE only direct children. An account outside the caller's subtree
 * is answered exactly like one that does not exist (same status, code and message), so that no
 * sub-account can probe which names or e-mail addresses exist elsewhere in the system.
 */
export async function resolveTarget(
  accounts: AccountLoader,
  caller: Account,
  ident: string,
  action: 'update' | 'delete',
): Promise<Result<{ target: Account }>> {
  const target = await accounts.resolve(ident);
  if (target === caller) {
    if (action === 'update') return { ok: true, target };
    return fail('forbidden', 'An account cannot delete itself.');
  }
  if (target === undefined || !(await accounts.isAncestor(caller, target))) {
    return fail('account_not_found', `No account "${ident.slice(0, 100)}".`);
  }
  if (action === 'delete' && target.parentId !== caller.id) {
    return fail('forbidden', 'Only the direct parent may delete an account.');
  }
  return { ok: true, target };
}

function grantFailure(reason: 'invalid_amount' | 'invalid_days' | 'insufficient_balance'): Failure {
  if (reason === 'invalid_days') return fail('invalid_value', 'Days must be within 0–365.', 'Days');
  if (reason === 'invalid_amount') {
    return fail('invalid_value', 'CreditGranted must be a positive amount.', 'CreditGranted');
  }
  return fail('insufficient_balance', 'Insufficient balance: your balance does not cover this grant.');
}

/** Checks that `payer` can fund `amount` child units at `childRates` and builds the grant. */
export function planGrant(input: {
  payer: Account;
  payerCards: readonly Card[];
  childCards: readonly Card[];
  childRates: RateMicros;
  amount: Micros;
  days: number | undefined;
  now: number;
}): Result<{ payerCards: Card[]; childCards: Card[]; entries: LedgerEntry[] }> {
  const { payer, now } = input;
  if (!payer.isRoot) {
    const cost = parentCost(input.amount, payer.rates, input.childRates);
    const available = liveBalance(input.payerCards, now) - payer.reserved;
    if (cost > available) {
      return fail(
        'insufficient_balance',
        `Insufficient balance: this grant costs you ${usd(cost)} and you have ${usd(Math.max(0, available))}.`,
      );
    }
  }
  const g = grantToChild({
    parentCards: input.payerCards,
    parentRates: payer.rates,
    childCards: input.childCards,
    childRates: input.childRates,
    now,
    parentIsRoot: payer.isRoot,
    amount: input.amount,
    ...(input.days !== undefined && { days: input.days }),
  });
  if (!g.ok) return grantFailure(g.reason);
  return { ok: true, payerCards: g.parentCards, childCards: g.childCards, entries: g.entries };
}

export interface CreateInput {
  name: string;
  email: string;
  creditGranted: Micros;
  alias?: string;
  rates?: RateMicros;
  days?: number;
}

/** `POST /x-users`: a direct child of `parent`, funded by `parent`. Returns the one-time key. */
export function createChild(
  deps: ServiceDeps,
  parent: Account,
  input: CreateInput,
  now: number,
): Result<{ child: Account; key: string }> {
  const { registry } = deps;
  if (input.creditGranted < deps.config.userMinBalance) {
    return fail(
      'invalid_value',
      `CreditGranted must be at least ${usd(deps.config.userMinBalance)}.`,
      'CreditGranted',
    );
  }
  const rates = input.rates ?? parent.rates;
  if (rates < parent.rates) {
    return fail(
      'invalid_value',
      `Rates must be at least your own Rates (${ratesToNumber(parent.rates)}).`,
      'Rates',
    );
  }
  const taken = uniquenessProblem(registry, input);
  if (taken !== undefined) return taken;
  if (parent.childCount >= parent.childLimit) {
    return fail('conflict', `You already have ${parent.childCount} sub-accounts, your ChildLimit.`);
  }
  const grant = planGrant({
    payer: parent,
    payerCards: parent.cards,
    childCards: [],
    childRates: rates,
    amount: input.creditGranted,
    days: input.days,
    now,
  });
  if (!grant.ok) return grant;

  let key = generateAccountKey();
  let keyHash = deps.secrets.hash(key);
  while (registry.byKeyHash(keyHash) !== undefined) {
    key = generateAccountKey();
    keyHash = deps.secrets.hash(key);
  }
  const period = deps.calendar.periodOf(now);
  const hardLimit = defaultHardLimit(input.creditGranted);
  const child: Account = {
    id: registry.allocateId(),
    parentId: parent.id,
    isRoot: false,
    createdAt: now,
    name: input.name,
    email: input.email,
    alias: input.alias ?? input.name,
    billingEmail: null,
    keyHash,
    partialKey: key.slice(-20),
    level: parent.level,
    rates,
    rateLimit: parent.rateLimit,
    childLimit: DEFAULT_CHILD_LIMIT,
    hardLimit,
    softLimit: defaultSoftLimit(hardLimit),
    status: true,
    allowIps: null,
    ipMatcher: null,
    // A restricted parent cannot hand out models it may not use itself.
    allowModels: parent.allowModels === null ? null : new Set(parent.allowModels),
    // Opened endpoint families are unmetered spend: never inherited, always granted explicitly.
    allowEndpoints: null,
    creditGranted: input.creditGranted,
    cards: grant.childCards,
    updatedAt: now,
    ...freshState(period),
  };
  parent.cards = grant.payerCards;
  parent.updatedAt = now;
  parent.childCount++;
  registry.add(child);
  deps.writer.markDirty(parent);
  deps.writer.markDirty(child);
  recordLedger(deps.writer, grant.entries, parent, child, now);
  return { ok: true, child, key };
}

/**
 * `DELETE /x-users/{ident}`: the child's live balance goes back to `parent` as a 180-day card minus
 * the $0.2 fee (card-ops `deleteChild`). Refused while the child has children of its own
 * (decisions.md) or requests in flight (their settlement would touch a deleted account).
 */
export function removeChild(
  deps: ServiceDeps,
  parent: Account,
  child: Account,
  now: number,
): Result<{ refund: Micros; fee: Micros }> {
  if (child.childCount > 0) {
    return fail(
      'conflict',
      `The account "${child.name}" has ${child.childCount} sub-account(s); delete them first.`,
    );
  }
  if (child.reserved > 0) {
    return fail('conflict', `The account "${child.name}" has requests in flight; try again in a moment.`);
  }
  const d = deleteChild({
    parentCards: parent.cards,
    parentRates: parent.rates,
    childCards: child.cards,
    childRates: child.rates,
    now,
    parentIsRoot: parent.isRoot,
  });
  parent.cards = d.parentCards;
  parent.updatedAt = now;
  child.cards = d.childCards;
  child.updatedAt = now;
  parent.childCount--;
  deps.registry.remove(child);
  deps.writer.markDirty(parent);
  deps.writer.markDeleted(child);
  deps.limiter.forget(child.id);
  recordLedger(deps.writer, d.entries, parent, child, now);
  return { ok: true, refund: d.refund, fee: d.fee };
}

/** The $0.002 fee of a full `GET /x-users` listing; root pays nothing. All or nothing. */
export function chargeListingFee(deps: ServiceDeps, caller: Account, now: number): Failure | undefined {
  if (caller.isRoot) return undefined;
  if (availableBalance(caller, now) < FEE_LIST) {
    return fail('insufficient_balance', `Insufficient balance for the listing fee of ${usd(FEE_LIST)}.`);
  }
  const r = chargeFee(caller.cards, FEE_LIST, now);
  if (!r.ok) return fail('insufficient_balance');
  caller.cards = r.cards;
  caller.updatedAt = now;
  deps.writer.markDirty(caller);
  for (const e of r.entries) {
    deps.writer.addLedger({
      account_id: caller.id,
      kind: e.kind,
      amount: e.amount,
      note: 'fee for listing all sub-accounts',
      request_id: null,
      created_at: now,
    });
  }
  return undefined;
}
