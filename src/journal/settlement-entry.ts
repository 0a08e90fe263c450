/**
 * One line of the settlement journal: what a settlement did to one account, already priced — the
 * usage rows it wrote, with the cost each one took from the balance. Replaying an entry after a
 * crash applies exactly that (meter.ts `replay`), so the replay never re-prices anything.
 *
 * A line is JSON followed by `\n`. A line without its `\n` (the process was killed in the middle
 * of the write) or that does not parse as an entry is skipped: the write it belongs to never
 * completed, so the answer it was holding back never left the gateway.
 *
 * Lines are written in the compact form (`"v":2`): each usage row is an array of its values in
 * JOURNAL_COLUMNS order, built by hand. Every settlement writes one, so this is on the hot path:
 * half the bytes and half the CPU of `JSON.stringify` on the keyed rows. Lines of the keyed form
 * (a journal left by an earlier version) still read back.
 */
import type { UsageRow } from '../store/batch-sink.js';

export interface SettlementEntry {
  /** Account the settlement belongs to. */
  readonly account: number;
  /** When it was settled (epoch ms): ledger rows and card expiry are as of this instant. */
  readonly at: number;
  /** Its usage rows (one per model; the first row's request id identifies the settlement). */
  readonly rows: readonly UsageRow[];
}

/**
 * The values of a usage row in a compact line, in this order (never reorder: add a version). The
 * same columns in the same order as the SQLite sink's USAGE_COLUMNS today, kept apart on purpose:
 * this list is a file format that journals already on disk depend on, that one only the order of
 * a prepared statement's parameters, free to change.
 */
export const JOURNAL_COLUMNS = [
  'request_id',
  'account_id',
  'model',
  'path',
  'day',
  'prompt_tokens',
  'cached_tokens',
  'completion_tokens',
  'cost',
  'status',
  'outcome',
  'attempts',
  'usage_source',
  'created_at',
  'stream',
  'reasoning_tokens',
  'images',
  'audio_ms',
  'characters',
  'rates',
  'latency_ms',
  'ttfb_ms',
  'client_ip',
  'error_code',
] as const satisfies readonly (keyof UsageRow)[];

// A number that JSON cannot hold (never expected) becomes null, as JSON.stringify writes it, so the
// line still parses and the decoder rejects the row instead of the whole file's tail.
const num = (v: number | null): string => (v !== null && Number.isFinite(v) ? `${v}` : 'null');

/**
 * One row's values, refilled for each row and written with one `JSON.stringify` (strings escaped,
 * non-finite numbers as null). Building the line by hand from 24 pieces made a string per piece
 * and per join: ≈ 2.4 kB of garbage per entry against ≈ 0.85 kB this way, and slower. Reusing the
 * array is safe: it is filled and read in one synchronous step, and holds only primitives.
 */
const cells: Array<string | number | null> = new Array<string | number | null>(JOURNAL_COLUMNS.length).fill(
  null,
);

export function encodeEntry(entry: SettlementEntry): string {
  const c = cells;
  let rows = '';
  for (let i = 0; i < entry.rows.length; i++) {
    const r = entry.rows[i] as UsageRow;
    // Same order as JOURNAL_COLUMNS (a test checks it).
    c[0] = r.request_id;
    c[1] = r.account_id;
    c[2] = r.model;
    c[3] = r.path;
    c[4] = r.day;
    c[5] = r.prompt_tokens;
    c[6] = r.cached_tokens;
    c[7] = r.completion_tokens;
    c[8] = r.cost;
    c[9] = r.status;
    c[10] = r.outcome;
    c[11] = r.attempts;
    c[12] = r.usage_source;
    c[13] = r.created_at;
    c[14] = r.stream;
    c[15] = r.reasoning_tokens;
    c[16] = r.images;
    c[17] = r.audio_ms;
    c[18] = r.characters;
    c[19] = r.rates;
    c[20] = r.latency_ms;
    c[21] = r.ttfb_ms;
    c[22] = r.client_ip;
    c[23] = r.error_code;
    rows += i === 0 ? JSON.stringify(c) : `,${JSON.stringify(c)}`;
  }
  return `{"account":${num(entry.account)},"at":${num(entry.at)},"v":2,"rows":[${rows}]}\n`;
}

export interface DecodedEntries {
  readonly entries: SettlementEntry[];
  /** Lines skipped: a torn last line, or anything that is not an entry. */
  readonly skipped: number;
}

/** Every complete, well-formed entry of a journal file's text, in order. */
export function decodeEntries(text: string): DecodedEntries {
  const entries: SettlementEntry[] = [];
  let skipped = 0;
  let start = 0;
  for (;;) {
    const end = text.indexOf('\n', start);
    if (end < 0) {
      // What follows the last newline is a write cut off by a kill: never acknowledged.
      if (start < text.length) skipped++;
      break;
    }
    const line = text.slice(start, end);
    start = end + 1;
    if (line === '') continue;
    const entry = parseEntry(line);
    if (entry === undefined) skipped++;
    else entries.push(entry);
  }
  return { entries, skipped };
}

function parseEntry(line: string): SettlementEntry | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!isRecord(value)) return undefined;
  const { account, at, rows, v } = value;
  if (!isInteger(account) || !isInteger(at) || !Array.isArray(rows) || rows.length === 0) return undefined;
  if (v !== undefined && v !== 2) return undefined;
  const usage: UsageRow[] = [];
  for (const row of rows as unknown[]) {
    const r = usageRow(v === 2 ? keyed(row) : row);
    if (r === undefined || r.account_id !== account) return undefined;
    usage.push(r);
  }
  return { account, at, rows: usage };
}

const NUMBER_FIELDS = [
  'account_id',
  'prompt_tokens',
  'cached_tokens',
  'completion_tokens',
  'cost',
  'status',
  'attempts',
  'created_at',
] as const;
const TEXT_FIELDS = ['request_id', 'model', 'path', 'day', 'outcome', 'usage_source'] as const;

function usageRow(value: unknown): UsageRow | undefined {
  if (!isRecord(value)) return undefined;
  for (const f of NUMBER_FIELDS) if (!isInteger(value[f])) return undefined;
  for (const f of TEXT_FIELDS) if (typeof value[f] !== 'string') return undefined;
  const v = value as Record<(typeof NUMBER_FIELDS)[number], number> &
    Record<(typeof TEXT_FIELDS)[number], string>;
  if (v.cost < 0) return undefined;
  return {
    request_id: v.request_id,
    account_id: v.account_id,
    model: v.model,
    path: v.path,
    day: v.day,
    prompt_tokens: v.prompt_tokens,
    cached_tokens: v.cached_tokens,
    completion_tokens: v.completion_tokens,
    cost: v.cost,
    status: v.status,
    outcome: v.outcome,
    attempts: v.attempts,
    usage_source: v.usage_source,
    created_at: v.created_at,
    // The request log's columns; a journal written before they existed lacks them.
    stream: intOr(value['stream'], 0),
    reasoning_tokens: intOr(value['reasoning_tokens'], 0),
    images: intOr(value['images'], 0),
    audio_ms: intOr(value['audio_ms'], 0),
    characters: intOr(value['characters'], 0),
    rates: intOr(value['rates'], 1_000_000),
    latency_ms: intOr(value['latency_ms'], null),
    ttfb_ms: intOr(value['ttfb_ms'], null),
    client_ip: typeof value['client_ip'] === 'string' ? value['client_ip'] : null,
    error_code: typeof value['error_code'] === 'string' ? value['error_code'] : null,
  };
}

/** A compact row (an array in JOURNAL_COLUMNS order) as the keyed row `usageRow` checks. */
function keyed(row: unknown): Record<string, unknown> | undefined {
  if (!Array.isArray(row) || row.length !== JOURNAL_COLUMNS.length) return undefined;
  const out: Record<string, unknown> = {};
  JOURNAL_COLUMNS.forEach((c, i) => (out[c] = row[i]));
  return out;
}

function intOr<T extends number | null>(v: unknown, fallback: T): number | T {
  return isInteger(v) ? v : fallback;
}

function isInteger(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
