/**
 * `PUT /x-users/{ident}` (spec §3.6): any subset of fields on any descendant, all or nothing.
 * Every value is checked and every money movement is computed on copies first (card-ops are pure);
 * only when the whole request is valid is anything assigned. The caller is the payer of
 * recharges and the receiver of deductions, whichever level the target is at.
 *
 * Order of effects inside one call: `Rates` rescales the target's cards first, so a
 * `CreditGranted` in the same call is in the new units; then the recharge or deduction; then the
 * HardLimit rule; then explicit `HardLimit`/`SoftLimit`, which win over the automatic rule. A
 * HardLimit lowered below the SoftLimit without a SoftLimit in the same call lowers the SoftLimit
 * to 80 % of the new HardLimit (reported in `warnings`).
 */
import type { Micros, RateMicros } from '../billing/money.js';
import { ratesToNumber } from '../billing/money.js';
import type { Account } from './account.js';
import { changeEndpoints, changeIps, changeModels } from './account-rules.js';
import {
  fail,
  planGrant,
  recordLedger,
  uniquenessProblem,
  usd,
  type Failure,
  type Result,
  type ServiceDeps,
} from './account-service.js';
import { deductFromChild, rescaleAccount, type LedgerEntry } from './card-ops.js';
import { defaultHardLimit, defaultSoftLimit, liveBalance, type Card } from './cards.js';
import { IpMatcher } from './ip-matcher.js';

export interface UpdateInput {
  /** Signed child units: > 0 recharge, < 0 deduct. 0 is "not given". */
  creditGranted?: Micros;
  days?: number;
  rates?: RateMicros;
  rateLimit?: number;
  name?: string;
  email?: string;
  alias?: string;
  /** null clears it (mails then go to Email). */
  billingEmail?: string | null;
  allowIps?: string[];
  denyIps?: string[];
  allowModels?: string[];
  denyModels?: string[];
  /** Refused endpoint families to open for the target (replaces the set; [] closes them all). */
  allowEndpoints?: string[];
  hardLimit?: Micros;
  softLimit?: Micros;
  status?: boolean;
  childLimit?: number;
}

/** PascalCase names of the fields this update changed beyond the always-reported ones. */
export type ChangedField = 'Alias' | 'BillingEmail' | 'AllowIPs' | 'AllowModels' | 'AllowEndpoints';

/** Fields an account may change on itself (spec §3.6: Alias and BillingEmail "self-adjusted"). */
const SELF_FIELDS: ReadonlySet<keyof UpdateInput> = new Set(['alias', 'billingEmail']);

interface MoneyPlan {
  childCards: Card[];
  callerCards: Card[] | undefined;
  entries: LedgerEntry[];
}

function planMoney(
  caller: Account,
  target: Account,
  input: UpdateInput,
  newRates: RateMicros,
  now: number,
): Result<MoneyPlan> {
  let childCards = target.cards;
  let callerCards: Card[] | undefined;
  const entries: LedgerEntry[] = [];
  if (newRates !== target.rates) {
    const r = rescaleAccount({ cards: childCards, oldRates: target.rates, newRates, now });
    childCards = r.cards;
    entries.push(...r.entries);
  }
  const amount = input.creditGranted ?? 0;
  if (amount > 0) {
    const g = planGrant({
      payer: caller,
      payerCards: caller.cards,
      childCards,
      childRates: newRates,
      amount,
      days: input.days,
      now,
    });
    if (!g.ok) return g;
    ({ childCards, payerCards: callerCards } = g);
    entries.push(...g.entries);
  } else if (amount < 0) {
    const available = liveBalance(childCards, now) - target.reserved;
    if (-amount > available) {
      return fail(
        'invalid_value',
        `Cannot take back ${usd(-amount)}: the account has ${usd(Math.max(0, available))} available.`,
        'CreditGranted',
      );
    }
    const d = deductFromChild({
      parentCards: caller.cards,
      parentRates: caller.rates,
      childCards,
      childRates: newRates,
      now,
      parentIsRoot: caller.isRoot,
      amount: -amount,
    });
    if (!d.ok) {
      if (d.reason === 'insufficient_balance')
        return fail('insufficient_balance', 'Insufficient balance for the $0.2 transaction fee.');
      return fail('invalid_value', 'CreditGranted is not a valid amount to take back.', 'CreditGranted');
    }
    childCards = d.childCards;
    callerCards = d.parentCards;
    entries.push(...d.entries);
  }
  return { ok: true, childCards, callerCards, entries };
}

function validate(
  deps: ServiceDeps,
  caller: Account,
  target: Account,
  input: UpdateInput,
): Failure | undefined {
  const { registry } = deps;
  if (target === caller) {
    const other = (Object.keys(input) as Array<keyof UpdateInput>).find((k) => !SELF_FIELDS.has(k));
    if (other !== undefined) {
      return fail('not_ancestor', 'An account may change only its own Alias and BillingEmail.');
    }
  }
  const taken = uniquenessProblem(registry, input, target);
  if (taken !== undefined) return taken;
  if (input.rates !== undefined) {
    const parent = target.parentId === null ? undefined : registry.get(target.parentId);
    if (parent !== undefined && input.rates < parent.rates) {
      return fail(
        'invalid_value',
        `Rates must be at least the Rates of the account's parent (${ratesToNumber(parent.rates)}).`,
        'Rates',
      );
    }
  }
  if (input.rateLimit !== undefined && !caller.isRoot && input.rateLimit > caller.rateLimit) {
    return fail(
      'invalid_value',
      `RateLimit cannot exceed your own RateLimit (${caller.rateLimit}).`,
      'RateLimit',
    );
  }
  if (input.days !== undefined && !((input.creditGranted ?? 0) > 0)) {
    return fail('invalid_value', 'Days applies only together with a positive CreditGranted.', 'Days');
  }
  return undefined;
}

/**
 * Applies `input` to `target` on behalf of `caller` (an ancestor, or the target itself for
 * self-service fields). Returns the extra changed fields for the response.
 */
export function updateAccount(
  deps: ServiceDeps,
  caller: Account,
  target: Account,
  input: UpdateInput,
  now: number,
): Result<{ changed: ChangedField[]; warnings: string[] }> {
  const invalid = validate(deps, caller, target, input);
  if (invalid !== undefined) return invalid;
  const ips = changeIps(target.allowIps, input.allowIps, input.denyIps);
  if (!ips.ok) return fail('invalid_value', ips.message, ips.field);
  const models = changeModels(
    target.allowModels,
    input.allowModels,
    input.denyModels,
    caller.isRoot ? null : caller.allowModels,
  );
  if (!models.ok) return fail('invalid_value', models.message, models.field);
  const endpoints = changeEndpoints(input.allowEndpoints, caller);
  if (!endpoints.ok) return fail('invalid_value', endpoints.message, 'AllowEndpoints');

  const newRates = input.rates ?? target.rates;
  const money = planMoney(caller, target, input, newRates, now);
  if (!money.ok) return money;

  let hardLimit = target.hardLimit;
  if (newRates !== target.rates || (input.creditGranted ?? 0) > 0) {
    // Spec §4.5 [inferred]: a balance above the monthly cap raises it to the next $100 multiple.
    const live = liveBalance(money.childCards, now);
    if (live > hardLimit) hardLimit = defaultHardLimit(live);
  }
  if (input.hardLimit !== undefined) hardLimit = input.hardLimit;
  let softLimit = input.softLimit ?? target.softLimit;
  const warnings: string[] = [];
  if (input.hardLimit !== undefined && input.softLimit === undefined && softLimit > hardLimit) {
    // The original documents that HardLimit "can be lowered": lowering it alone takes the
    // SoftLimit down with it (to its default share of the new HardLimit), and says so.
    const lowered = defaultSoftLimit(hardLimit);
    warnings.push(
      `SoftLimit lowered from ${usd(softLimit)} to ${usd(lowered)} (80 % of the new HardLimit ${usd(hardLimit)}), as a SoftLimit may not exceed the HardLimit.`,
    );
    softLimit = lowered;
  }
  if (softLimit > hardLimit) {
    return fail(
      'invalid_value',
      `SoftLimit (${usd(softLimit)}) must not exceed HardLimit (${usd(hardLimit)}).`,
      input.softLimit !== undefined ? 'SoftLimit' : 'HardLimit',
    );
  }

  // ---- everything is valid: commit (synchronously) ----
  const changed: ChangedField[] = [];
  const old = { name: target.name, email: target.email, keyHash: target.keyHash };
  if (input.name !== undefined) target.name = input.name;
  if (input.email !== undefined) target.email = input.email;
  if (input.name !== undefined || input.email !== undefined) deps.registry.reindex(target, old);
  if (input.alias !== undefined) {
    target.alias = input.alias;
    changed.push('Alias');
  }
  if (input.billingEmail !== undefined) {
    target.billingEmail = input.billingEmail;
    changed.push('BillingEmail');
  }
  if (input.allowIps !== undefined || input.denyIps !== undefined) {
    target.allowIps = ips.value;
    target.ipMatcher = ips.value === null ? null : new IpMatcher(ips.value);
    changed.push('AllowIPs');
  }
  if (input.allowModels !== undefined || input.denyModels !== undefined) {
    target.allowModels = models.value;
    changed.push('AllowModels');
  }
  if (input.allowEndpoints !== undefined) {
    target.allowEndpoints = endpoints.value;
    changed.push('AllowEndpoints');
  }
  if (input.rateLimit !== undefined) target.rateLimit = input.rateLimit;
  if (input.status !== undefined) target.status = input.status;
  if (input.childLimit !== undefined) target.childLimit = input.childLimit;
  target.rates = newRates;
  target.cards = money.childCards;
  target.hardLimit = hardLimit;
  target.softLimit = softLimit;
  if (input.creditGranted !== undefined && input.creditGranted !== 0)
    target.creditGranted = input.creditGranted;
  target.updatedAt = now;
  deps.writer.markDirty(target);
  if (money.callerCards !== undefined) {
    caller.cards = money.callerCards;
    caller.updatedAt = now;
    deps.writer.markDirty(caller);
  }
  recordLedger(deps.writer, money.entries, caller, target, now);
  return { ok: true, changed, warnings };
}
