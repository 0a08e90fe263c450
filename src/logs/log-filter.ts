/**
 * The query of GET /x-logs, parsed and checked: which accounts' rows the caller asks for (never
 * more than it may see), the time range, the other filters, the page and the output format. Every
 * bad value is a 400 naming its parameter, before anything is read.
 */
import type { Account } from '../accounts/account.js';
import type { AccountLoader } from '../accounts/account-loader.js';
import type { Calendar } from '../billing/calendar.js';
import { MAX_USD, usdToMicros, type Micros } from '../billing/money.js';
import { GatewayError } from '../errors/catalogue.js';

/** Where a page starts: strictly below this (time, request id), newest first. */
export interface LogKey {
  readonly at: number;
  readonly id: string;
}

/** Whose rows: every account's (root), or these accounts' only. */
export type LogAccounts =
  { readonly kind: 'all' } | { readonly kind: 'some'; readonly ids: readonly number[] };

export interface LogFilter {
  readonly accounts: LogAccounts;
  /** Inclusive lower bound, epoch ms. */
  readonly from: number | undefined;
  /** Exclusive upper bound, epoch ms. */
  readonly to: number | undefined;
  readonly model: string | undefined;
  readonly outcomes: readonly string[] | undefined;
  readonly minCost: Micros | undefined;
}

export interface LogQuery {
  readonly filter: LogFilter;
  readonly size: number;
  /** Rows strictly below this key; the page number it leads to. */
  readonly after: LogKey | undefined;
  readonly page: number;
  readonly count: boolean;
  readonly format: 'json' | 'csv';
}

export const OUTCOMES = [
  'completed',
  'client-gone',
  'upstream-error',
  'refused',
  'failed',
  'cancelled',
  'expired',
  'incomplete',
] as const;

export const MAX_LOG_PAGE = 1000;
const DEFAULT_LOG_PAGE = 100;

export async function parseLogQuery(
  query: URLSearchParams,
  accept: string | undefined,
  caller: Account,
  accounts: AccountLoader,
  calendar: Calendar,
): Promise<LogQuery> {
  const from = time(query, 'from', calendar);
  const to = time(query, 'to', calendar);
  if (from !== undefined && to !== undefined && from > to)
    throw invalid('from must not be later than to.', 'from');
  const size = int(query, 'size', DEFAULT_LOG_PAGE, 1, MAX_LOG_PAGE);
  const descendants = bool(query, 'descendants', true);
  const count = bool(query, 'count', false);
  const format = outputFormat(query, accept);
  const cursor = parseCursor(query.get('cursor'));
  const model = nonEmpty(query, 'model');
  const outcomes = outcomeList(query);
  const minCost = cost(query);
  const whom = await whose(query, caller, accounts, descendants);
  return {
    filter: { accounts: whom, from, to, model, outcomes, minCost },
    size,
    after: cursor?.key,
    page: cursor?.page ?? 1,
    count,
    format,
  };
}

/** The accounts named (the caller by default), with their descendants unless asked not to. */
async function whose(
  query: URLSearchParams,
  caller: Account,
  accounts: AccountLoader,
  descendants: boolean,
): Promise<LogAccounts> {
  const ident = query.get('account');
  let target = caller;
  if (ident !== null && ident !== '') {
    const found = await accounts.resolve(ident);
    // A sibling or a parent is "unknown" too: the answer never says whether it exists.
    if (
      found === undefined ||
      (found !== caller && !caller.isRoot && !(await accounts.isAncestor(caller, found)))
    )
      throw invalid(`No account "${ident.slice(0, 100)}" among yours.`, 'account');
    target = found;
  }
  if (!descendants) return { kind: 'some', ids: [target.id] };
  if (target.isRoot) return { kind: 'all' };
  return { kind: 'some', ids: [target.id, ...(await accounts.descendantIds(target))] };
}

/** ISO 8601 (a date alone is midnight in the gateway's TZ) or epoch milliseconds. */
function time(query: URLSearchParams, name: string, calendar: Calendar): number | undefined {
  const raw = query.get(name);
  if (raw === null || raw === '') return undefined;
  if (/^\d{1,15}$/.test(raw)) return Number(raw);
  if (/^\d{4}-\d{2}-\d{2}$/.test(raw)) {
    const ms = Date.parse(`${raw}T00:00:00Z`);
    if (Number.isNaN(ms)) throw invalid(`${name} is not a valid date.`, name);
    return calendar.startOfDay(raw);
  }
  // A time without an offset is read in the gateway's TZ, as it writes its own times.
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/.test(raw)) {
    const ms = Date.parse(raw);
    if (!Number.isNaN(ms)) return ms;
  }
  throw invalid(`${name} must be an ISO 8601 date or time (with an offset) or epoch milliseconds.`, name);
}

function int(query: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const raw = query.get(name);
  if (raw === null || raw === '') return fallback;
  if (!/^\d{1,9}$/.test(raw) || Number(raw) < min || Number(raw) > max)
    throw invalid(`${name} must be a whole number from ${min} to ${max}.`, name);
  return Number(raw);
}

function bool(query: URLSearchParams, name: string, fallback: boolean): boolean {
  const raw = query.get(name);
  if (raw === null || raw === '') return fallback;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw invalid(`${name} must be true or false.`, name);
}

function nonEmpty(query: URLSearchParams, name: string): string | undefined {
  const raw = query.get(name);
  if (raw === null || raw === '') return undefined;
  if (raw.length > 200) throw invalid(`${name} is too long.`, name);
  return raw;
}

function outcomeList(query: URLSearchParams): string[] | undefined {
  const raw = query.get('outcome');
  if (raw === null || raw === '') return undefined;
  const list = [...new Set(raw.split(',').map((s) => s.trim()))];
  for (const o of list) {
    if (!(OUTCOMES as readonly string[]).includes(o))
      throw invalid(`outcome must be a comma list of: ${OUTCOMES.join(', ')}.`, 'outcome');
  }
  return list;
}

function cost(query: URLSearchParams): Micros | undefined {
  const raw = query.get('min_cost');
  if (raw === null || raw === '') return undefined;
  if (!/^\d+(\.\d+)?$/.test(raw) || Number(raw) > MAX_USD)
    throw invalid('min_cost must be an amount in USD (a decimal number, 0 or more).', 'min_cost');
  return usdToMicros(Number(raw));
}

function outputFormat(query: URLSearchParams, accept: string | undefined): 'json' | 'csv' {
  const raw = query.get('format');
  if (raw === 'csv') return 'csv';
  if (raw === 'json') return 'json';
  if (raw !== null && raw !== '') throw invalid('format must be json or csv.', 'format');
  return accept !== undefined && /\btext\/csv\b/i.test(accept) ? 'csv' : 'json';
}

/**
 * Cursors are opaque to clients: base64url of the key below which the next page starts, and that
 * page's number (for the x-page header).
 */
export function encodeCursor(key: LogKey, page: number): string {
  return Buffer.from(JSON.stringify([key.at, key.id, page])).toString('base64url');
}

function parseCursor(raw: string | null): { key: LogKey; page: number } | undefined {
  if (raw === null || raw === '') return undefined;
  let value: unknown;
  try {
    value = raw.length <= 400 ? JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) : undefined;
  } catch {
    value = undefined;
  }
  if (
    Array.isArray(value) &&
    value.length === 3 &&
    Number.isSafeInteger(value[0]) &&
    typeof value[1] === 'string' &&
    (value[1] as string).length <= 200 &&
    Number.isSafeInteger(value[2]) &&
    (value[2] as number) >= 1
  ) {
    return { key: { at: value[0] as number, id: value[1] as string }, page: value[2] as number };
  }
  throw invalid('cursor is not one this gateway gave (use x-next-cursor as it is).', 'cursor');
}

function invalid(message: string, param: string): GatewayError {
  return new GatewayError('invalid_value', message, param);
}
