/**
 * `GET /dashboard/billing/usage?start_date=YYYY-MM-DD&end_date=YYYY-MM-DD` (spec §3.9) in OpenAI's
 * legacy shape: `{object:"list", daily_costs:[{timestamp, line_items:[{name, cost}]}], total_usage}`.
 *
 *  - `end_date` is exclusive, like OpenAI; both dates are required calendar dates (TZ days, the same
 *    days `usage_daily` is keyed by) and the range is 1–366 days (any 12 calendar months);
 *  - every day of the range is listed, days without usage with empty `line_items`;
 *  - `timestamp` is the unix second of 00:00 of that day in TZ;
 *  - one line item per model (sorted by name), `cost` and `total_usage` in cents
 *    (micros / 10 000, fractional numbers), in the account's own book units;
 *  - requests without a model (e.g. GET /v1/models) are free and not listed.
 * The caller awaits `writer.flush()` first so requests still in the write batch are included.
 */
import type { Kysely } from 'kysely';
import type { Calendar } from '../billing/calendar.js';
import type { Micros } from '../billing/money.js';
import { GatewayError } from '../errors/catalogue.js';
import type { Database } from '../store/schema.js';

/** Longest accepted range: 12 calendar months are at most 366 days. */
export const MAX_RANGE_DAYS = 366;
const MICROS_PER_CENT = 10_000;
const DAY_RE = /^(\d{4})-(\d{2})-(\d{2})$/;

export interface LineItem {
  name: string;
  cost: number;
}

export interface DailyCost {
  timestamp: number;
  line_items: LineItem[];
}

export interface BillingUsage {
  object: 'list';
  daily_costs: DailyCost[];
  total_usage: number;
}

export interface DateRange {
  /** First day, inclusive ("YYYY-MM-DD"). */
  start: string;
  /** Day after the last one (exclusive). */
  end: string;
  /** The days from start (inclusive) to end (exclusive). */
  days: string[];
}

/** Day number since 1970-01-01 of a valid "YYYY-MM-DD", or undefined when it is not a real date. */
function dayNumber(value: string): number | undefined {
  const m = DAY_RE.exec(value);
  if (m === null) return undefined;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (y < 1970 || mo < 1 || mo > 12 || d < 1) return undefined;
  const ms = Date.UTC(y, mo - 1, d);
  const back = new Date(ms);
  // Rejects 2024-02-30 and friends, which Date.UTC silently rolls over.
  if (back.getUTCFullYear() !== y || back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d) {
    return undefined;
  }
  return ms / 86_400_000;
}

function dayString(n: number): string {
  return new Date(n * 86_400_000).toISOString().slice(0, 10);
}

function requiredDay(params: URLSearchParams, name: 'start_date' | 'end_date'): number {
  const raw = params.get(name);
  if (raw === null || raw === '') {
    throw new GatewayError('invalid_value', `The query parameter ${name} (YYYY-MM-DD) is required.`, name);
  }
  const n = dayNumber(raw);
  if (n === undefined) {
    throw new GatewayError(
      'invalid_value',
      `Invalid ${name} "${raw.slice(0, 40)}": expected a date as YYYY-MM-DD.`,
      name,
    );
  }
  return n;
}

/** Validates `start_date` / `end_date`; throws `invalid_value` (400) naming the bad parameter. */
export function parseDateRange(params: URLSearchParams): DateRange {
  const start = requiredDay(params, 'start_date');
  const end = requiredDay(params, 'end_date');
  if (end <= start) {
    throw new GatewayError(
      'invalid_value',
      'end_date must be after start_date (end_date is exclusive).',
      'end_date',
    );
  }
  if (end - start > MAX_RANGE_DAYS) {
    throw new GatewayError(
      'invalid_value',
      `The date range may not exceed 12 months (${MAX_RANGE_DAYS} days).`,
      'end_date',
    );
  }
  const days: string[] = [];
  for (let n = start; n < end; n++) days.push(dayString(n));
  return { start: dayString(start), end: dayString(end), days };
}

function cents(micros: Micros): number {
  return micros / MICROS_PER_CENT;
}

/** Reads `usage_daily` for `accountId` over `range` and builds the OpenAI legacy answer. */
export async function billingUsage(
  db: Kysely<Database>,
  calendar: Calendar,
  accountId: number,
  range: DateRange,
): Promise<BillingUsage> {
  const rows = await db
    .selectFrom('usage_daily')
    .select(['day', 'model', 'cost'])
    .where('account_id', '=', accountId)
    .where('day', '>=', range.start)
    .where('day', '<', range.end)
    .where('model', '!=', '')
    .orderBy('day')
    .orderBy('model')
    .execute();
  const byDay = new Map<string, LineItem[]>();
  let total = 0;
  for (const r of rows) {
    const cost = Number(r.cost);
    total += cost;
    let items = byDay.get(r.day);
    if (items === undefined) byDay.set(r.day, (items = []));
    items.push({ name: r.model, cost: cents(cost) });
  }
  return {
    object: 'list',
    daily_costs: range.days.map((day) => ({
      timestamp: Math.floor(calendar.startOfDay(day) / 1000),
      line_items: byDay.get(day) ?? [],
    })),
    // Summed in integer micros, converted once: no float drift across many line items.
    total_usage: cents(total),
  };
}
