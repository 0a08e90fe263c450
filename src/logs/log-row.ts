/**
 * How one request-log row is shown: as a JSON object (GET /x-logs) or a CSV line (its export).
 * Money leaves as USD with six decimals (exact: it is stored in micro-dollars); a row of another
 * account than the caller also says what it cost at the caller's own Rates.
 */
import type { Account } from '../accounts/account.js';
import type { Calendar } from '../billing/calendar.js';
import { convertRates, microsToUsd, ratesToNumber } from '../billing/money.js';
import type { LogRow } from './log-page.js';

export interface LogView {
  readonly caller: Account;
  /** Names of the accounts of the rows shown so far (read from the store page by page). */
  readonly names: Map<number, string>;
  readonly calendar: Calendar;
}

export interface LogJson {
  object: 'request';
  request_id: string;
  created_at: string;
  created: number;
  account_id: number;
  account_name: string | null;
  endpoint: string;
  model: string;
  stream: boolean;
  prompt_tokens: number;
  cached_tokens: number;
  completion_tokens: number;
  reasoning_tokens: number;
  images: number;
  audio_seconds: number;
  characters: number;
  cost: number;
  cost_micros: number;
  rates: number;
  cost_at_caller_rates?: number;
  outcome: string;
  error_code: string | null;
  status: number;
  latency_ms: number | null;
  ttfb_ms: number | null;
  attempts: number;
  client_ip: string | null;
  usage_source: string;
}

export function logJson(row: LogRow, view: LogView): LogJson {
  const at = Number(row.created_at);
  const cost = Number(row.cost);
  const rates = Number(row.rates);
  const out: LogJson = {
    object: 'request',
    request_id: row.request_id,
    created_at: view.calendar.iso(at),
    created: at,
    account_id: row.account_id,
    account_name: view.names.get(row.account_id) ?? null,
    endpoint: row.path,
    model: row.model,
    stream: Number(row.stream) === 1,
    prompt_tokens: Number(row.prompt_tokens),
    cached_tokens: Number(row.cached_tokens),
    completion_tokens: Number(row.completion_tokens),
    reasoning_tokens: Number(row.reasoning_tokens),
    images: Number(row.images),
    audio_seconds: Number(row.audio_ms) / 1000,
    characters: Number(row.characters),
    cost: microsToUsd(cost),
    cost_micros: cost,
    rates: ratesToNumber(rates),
    outcome: row.outcome,
    error_code: row.error_code,
    status: row.status,
    latency_ms: row.latency_ms === null ? null : Number(row.latency_ms),
    ttfb_ms: row.ttfb_ms === null ? null : Number(row.ttfb_ms),
    attempts: row.attempts,
    client_ip: row.client_ip,
    usage_source: row.usage_source,
  };
  if (row.account_id !== view.caller.id && rates > 0)
    out.cost_at_caller_rates = microsToUsd(convertRates(cost, rates, view.caller.rates));
  return out;
}

export const CSV_COLUMNS = [
  'created_at',
  'request_id',
  'account_id',
  'account_name',
  'endpoint',
  'model',
  'stream',
  'prompt_tokens',
  'cached_tokens',
  'completion_tokens',
  'reasoning_tokens',
  'images',
  'audio_seconds',
  'characters',
  'cost',
  'rates',
  'outcome',
  'error_code',
  'status',
  'latency_ms',
  'ttfb_ms',
  'attempts',
  'client_ip',
] as const satisfies ReadonlyArray<keyof LogJson>;

export const CSV_HEADER = CSV_COLUMNS.join(',') + '\r\n';

export function csvLine(row: LogRow, view: LogView): string {
  const j = logJson(row, view);
  let line = '';
  for (let i = 0; i < CSV_COLUMNS.length; i++) {
    const col = CSV_COLUMNS[i]!;
    const v = col === 'cost' ? usdText(j.cost_micros) : j[col];
    if (i > 0) line += ',';
    line += cell(v);
  }
  return line + '\r\n';
}

/** Micro-dollars as an exact decimal string (no float formatting artefacts in a spreadsheet). */
function usdText(micros: number): string {
  const whole = Math.trunc(micros / 1_000_000);
  const frac = String(micros % 1_000_000).padStart(6, '0');
  return `${whole}.${frac}`;
}

/** RFC 4180 quoting; a leading = + - @ is prefixed so a spreadsheet never runs it as a formula. */
function cell(v: string | number | boolean | null | undefined): string {
  if (v === null || v === undefined) return '';
  if (typeof v !== 'string') return String(v);
  const safe = /^[=+\-@\t\r]/.test(v) ? `'${v}` : v;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}
