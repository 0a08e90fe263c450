/**
 * Request bodies of /x-users, parsed into typed inputs for the account service. Types, formats and
 * ranges are checked here (400 naming the field); rules that need state (uniqueness, balances,
 * the parent's Rates) are the service's.
 *
 * Like the original, a field the API does not know is ignored rather than refused (older clients
 * still send fields of older versions), but never silently: each one is reported back as a
 * warning (`Warnings` in the answer and the `x-proxyxai-warning` header), and a PUT whose body
 * names no known field at all is still a 400, so that a lone typo such as `{"Rate": 2}` cannot
 * look like a success. The original's older names are read as aliases: `AllowIP` / `DenyIP`
 * (before 2024-01-08) for `AllowIPs` / `DenyIPs`, and its successor's `RPM` for `RateLimit`.
 */
import { isValidEmail, nameProblem, normalizeName } from '../accounts/account-rules.js';
import type { CreateInput } from '../accounts/account-service.js';
import type { UpdateInput } from '../accounts/account-update.js';
import { MAX_CARD_DAYS } from '../accounts/cards.js';
import { MAX_USD, ratesFromNumber, usdToMicros, type Micros } from '../billing/money.js';
import { GatewayError } from '../errors/catalogue.js';
import { field, type JsonObject } from './json-body.js';

/** A parsed body and what the caller should be told about it. */
export interface Parsed<T> {
  readonly input: T;
  /** Ignored fields and similar notices, for the answer's `Warnings`. */
  readonly warnings: string[];
}

const CREATE_FIELDS = ['Name', 'Email', 'CreditGranted', 'Alias', 'Rates', 'Days'] as const;
const UPDATE_FIELDS = [
  'CreditGranted',
  'Days',
  'Rates',
  'RateLimit',
  'Name',
  'Email',
  'Alias',
  'BillingEmail',
  'AllowIPs',
  'DenyIPs',
  'AllowModels',
  'DenyModels',
  'AllowEndpoints',
  'HardLimit',
  'SoftLimit',
  'Status',
  'ChildLimit',
] as const;
/** Older names still accepted on PUT, and the field each stands for. */
const UPDATE_ALIASES: Readonly<Record<string, (typeof UPDATE_FIELDS)[number]>> = {
  AllowIP: 'AllowIPs',
  DenyIP: 'DenyIPs',
  RPM: 'RateLimit',
};
/** Unknown fields named one by one in the warnings; beyond that they are counted. */
const MAX_NAMED_UNKNOWN = 10;
/** Largest RateLimit / ChildLimit accepted (well above the original's 6666666 and 88888888). */
const MAX_COUNT = 1_000_000_000;
/** Largest Rates accepted (`ratesFromNumber`'s range). */
const MAX_RATES = 1_000_000;

function invalid(name: string, message: string): GatewayError {
  return new GatewayError('invalid_value', message, name);
}

/** The body's fields that are neither accepted nor an alias, quoted for a message. */
function unknownFields(
  body: JsonObject,
  allowed: readonly string[],
  aliases: readonly string[] = [],
): string {
  const unknown = Object.keys(body).filter((k) => !allowed.includes(k) && !aliases.includes(k));
  const named = unknown.slice(0, MAX_NAMED_UNKNOWN).map((k) => `"${k.slice(0, 60)}"`);
  const more = unknown.length > MAX_NAMED_UNKNOWN ? ` and ${unknown.length - MAX_NAMED_UNKNOWN} more` : '';
  return unknown.length === 0 ? '' : named.join(', ') + more;
}

/** The warning for ignored fields (none: no warning). */
function ignoredWarning(unknown: string, allowed: readonly string[]): string[] {
  return unknown === ''
    ? []
    : [`Ignored unknown field(s) ${unknown}. Accepted fields: ${allowed.join(', ')}.`];
}

function name(body: JsonObject): string | undefined {
  const raw = field.string(body, 'Name', { max: 1000 });
  if (raw === undefined) return undefined;
  const v = normalizeName(raw);
  const problem = nameProblem(v);
  if (problem !== undefined) throw invalid('Name', problem);
  return v;
}

function email(body: JsonObject, key: 'Email' | 'BillingEmail'): string | undefined {
  const v = field.string(body, key, { max: 1000 });
  if (v === undefined || (key === 'BillingEmail' && v === '')) return v;
  if (!isValidEmail(v)) throw invalid(key, `${key} must be a valid e-mail address.`);
  return v;
}

function usdField(body: JsonObject, key: string, min: number): Micros | undefined {
  const v = field.number(body, key, { min, max: MAX_USD });
  return v === undefined ? undefined : usdToMicros(v);
}

function rates(body: JsonObject): number | undefined {
  const v = field.number(body, 'Rates', { max: MAX_RATES });
  if (v === undefined) return undefined;
  const r = v > 0 ? ratesFromNumber(v) : 0;
  if (r <= 0) throw invalid('Rates', 'Rates must be a positive number.');
  return r;
}

function days(body: JsonObject): number | undefined {
  return field.number(body, 'Days', { min: 0, max: MAX_CARD_DAYS });
}

/** `POST /x-users` body. */
export function parseCreate(body: JsonObject): Parsed<CreateInput> {
  const warnings = ignoredWarning(unknownFields(body, CREATE_FIELDS), CREATE_FIELDS);
  const n = name(body);
  if (n === undefined) throw invalid('Name', 'Name is required.');
  const e = email(body, 'Email');
  if (e === undefined) throw invalid('Email', 'Email is required.');
  const credit = usdField(body, 'CreditGranted', 0);
  if (credit === undefined) throw invalid('CreditGranted', 'CreditGranted (a number of USD) is required.');
  const alias = field.string(body, 'Alias', { min: 1, max: 100 });
  const r = rates(body);
  const d = days(body);
  return {
    input: {
      name: n,
      email: e,
      creditGranted: credit,
      ...(alias !== undefined && { alias }),
      ...(r !== undefined && { rates: r }),
      ...(d !== undefined && { days: d }),
    },
    warnings,
  };
}

/** A list field together with its older alias (`AllowIPs` and `AllowIP`): both lists, joined. */
function listWithAlias(body: JsonObject, key: string, alias: string): string[] | undefined {
  const a = field.list(body, key);
  const b = field.list(body, alias);
  if (a === undefined) return b;
  return b === undefined ? a : [...a, ...b];
}

/** `RateLimit`, or its successor's name `RPM`; both at once must agree. */
function rateLimitField(body: JsonObject): number | undefined {
  const a = field.integer(body, 'RateLimit', { min: 1, max: MAX_COUNT });
  const b = field.integer(body, 'RPM', { min: 1, max: MAX_COUNT });
  if (a !== undefined && b !== undefined && a !== b)
    throw invalid('RPM', 'RateLimit and RPM (its other name) were both given, with different values.');
  return a ?? b;
}

/** `PUT /x-users/{ident}` body; at least one known field must be present. */
export function parseUpdate(body: JsonObject): Parsed<UpdateInput> {
  const unknown = unknownFields(body, UPDATE_FIELDS, Object.keys(UPDATE_ALIASES));
  const credit = usdField(body, 'CreditGranted', -MAX_USD);
  const creditRaw = body['CreditGranted'];
  if (credit === 0 && typeof creditRaw === 'number' && creditRaw !== 0) {
    throw invalid('CreditGranted', 'CreditGranted is below one micro-dollar.');
  }
  const out: UpdateInput = {};
  if (credit !== undefined && credit !== 0) out.creditGranted = credit;
  const d = days(body);
  if (d !== undefined) out.days = d;
  const r = rates(body);
  if (r !== undefined) out.rates = r;
  const rateLimit = rateLimitField(body);
  if (rateLimit !== undefined) out.rateLimit = rateLimit;
  const n = name(body);
  if (n !== undefined) out.name = n;
  const e = email(body, 'Email');
  if (e !== undefined) out.email = e;
  const alias = field.string(body, 'Alias', { min: 1, max: 100 });
  if (alias !== undefined) out.alias = alias;
  if (body['BillingEmail'] === null) out.billingEmail = null;
  const billing = email(body, 'BillingEmail');
  if (billing !== undefined) out.billingEmail = billing === '' ? null : billing;
  const allowIps = listWithAlias(body, 'AllowIPs', 'AllowIP');
  if (allowIps !== undefined) out.allowIps = allowIps;
  const denyIps = listWithAlias(body, 'DenyIPs', 'DenyIP');
  if (denyIps !== undefined) out.denyIps = denyIps;
  const allowModels = field.list(body, 'AllowModels');
  if (allowModels !== undefined) out.allowModels = allowModels;
  const denyModels = field.list(body, 'DenyModels');
  if (denyModels !== undefined) out.denyModels = denyModels;
  const allowEndpoints = field.list(body, 'AllowEndpoints');
  if (allowEndpoints !== undefined) out.allowEndpoints = allowEndpoints;
  const hard = usdField(body, 'HardLimit', 0);
  if (hard !== undefined) out.hardLimit = hard;
  const soft = usdField(body, 'SoftLimit', 0);
  if (soft !== undefined) out.softLimit = soft;
  const status = field.boolean(body, 'Status');
  if (status !== undefined) out.status = status;
  const childLimit = field.integer(body, 'ChildLimit', { min: 0, max: MAX_COUNT });
  if (childLimit !== undefined) out.childLimit = childLimit;
  if (Object.keys(out).length === 0 && !('CreditGranted' in body)) {
    const ignored = unknown === '' ? '' : ` (unknown: ${unknown})`;
    throw new GatewayError(
      'invalid_value',
      `The body names no field to change${ignored}. Accepted fields: ${UPDATE_FIELDS.join(', ')}.`,
    );
  }
  return { input: out, warnings: ignoredWarning(unknown, UPDATE_FIELDS) };
}
