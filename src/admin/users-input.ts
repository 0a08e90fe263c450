/**
 * Request bodies of /x-users, parsed into typed inputs for the account service. Types, formats and
 * ranges are checked here (400 naming the field); rules that need state (uniqueness, balances,
 * the parent's Rates) are the service's. Unknown fields are refused rather than silently ignored,
 * so a typo such as `"Rate": 2` cannot look like a success.
 */
import { isValidEmail, nameProblem } from '../accounts/account-rules.js';
import type { CreateInput } from '../accounts/account-service.js';
import type { UpdateInput } from '../accounts/account-update.js';
import { MAX_CARD_DAYS } from '../accounts/cards.js';
import { MAX_USD, ratesFromNumber, usdToMicros, type Micros } from '../billing/money.js';
import { GatewayError } from '../errors/catalogue.js';
import { field, type JsonObject } from './json-body.js';

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
/** Largest RateLimit / ChildLimit accepted (well above the original's 6666666 and 88888888). */
const MAX_COUNT = 1_000_000_000;
/** Largest Rates accepted (`ratesFromNumber`'s range). */
const MAX_RATES = 1_000_000;

function invalid(name: string, message: string): GatewayError {
  return new GatewayError('invalid_value', message, name);
}

function rejectUnknown(body: JsonObject, allowed: readonly string[]): void {
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) {
      throw invalid(key, `Unknown field "${key.slice(0, 60)}". Accepted fields: ${allowed.join(', ')}.`);
    }
  }
}

function name(body: JsonObject): string | undefined {
  const v = field.string(body, 'Name', { max: 1000 });
  if (v === undefined) return undefined;
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
export function parseCreate(body: JsonObject): CreateInput {
  rejectUnknown(body, CREATE_FIELDS);
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
    name: n,
    email: e,
    creditGranted: credit,
    ...(alias !== undefined && { alias }),
    ...(r !== undefined && { rates: r }),
    ...(d !== undefined && { days: d }),
  };
}

/** `PUT /x-users/{ident}` body; at least one field must be present. */
export function parseUpdate(body: JsonObject): UpdateInput {
  rejectUnknown(body, UPDATE_FIELDS);
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
  const rateLimit = field.integer(body, 'RateLimit', { min: 1, max: MAX_COUNT });
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
  const allowIps = field.list(body, 'AllowIPs');
  if (allowIps !== undefined) out.allowIps = allowIps;
  const denyIps = field.list(body, 'DenyIPs');
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
    throw new GatewayError(
      'invalid_value',
      `The body names no field to change. Accepted fields: ${UPDATE_FIELDS.join(', ')}.`,
    );
  }
  return out;
}
