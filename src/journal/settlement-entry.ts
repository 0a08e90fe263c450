/**
 * One line of the settlement journal: what a settlement did to one account, already priced — the
 * usage rows it wrote, with the cost each one took from the balance. Replaying an entry after a
 * crash applies exactly that (meter.ts `replay`), so the replay never re-prices anything.
 *
 * A line is JSON followed by `\n`. A line without its `\n` (the process was killed in the middle
 * of the write) or that does not parse as an entry is skipped: the write it belongs to never
 * completed, so the answer it was holding back never left the gateway.
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

export function encodeEntry(entry: SettlementEntry): string {
  return `${JSON.stringify(entry)}\n`;
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
  const { account, at, rows } = value;
  if (!isInteger(account) || !isInteger(at) || !Array.isArray(rows) || rows.length === 0) return undefined;
  const usage: UsageRow[] = [];
  for (const row of rows as unknown[]) {
    const r = usageRow(row);
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

function intOr<T extends number | null>(v: unknown, fallback: T): number | T {
  return isInteger(v) ? v : fallback;
}

function isInteger(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
