/**
 * What handing a batch's per-request rows to the SQLite writer thread costs, stand-alone: the
 * rows as arrays of values (structured clone walks every value; how batches went over before)
 * against packed rows (packed-rows.ts: numbers in a transferred Float64Array, strings in one
 * table). Sending side: building the message and serializing it; receiving side: reading it back
 * into the statements' parameter lists.
 *
 *   node --import tsx bench/handover.ts          (ROWS per batch, default 1000)
 */
import { deserialize, serialize } from 'node:v8';
import { NO_LOG_DETAIL, type LedgerRow, type UsageRow } from '../src/store/batch-sink.js';
import { nextRequestId } from '../src/http/server.js';
import { packLedger, packUsage, unpackRows, type PackedRows } from '../src/store/sqlite/packed-rows.js';

const ROWS = Number(process.env['ROWS'] ?? '1000') || 1000;
const PER_STATEMENT = 32;

const usage: UsageRow[] = [];
const ledger: LedgerRow[] = [];
for (let i = 0; i < ROWS; i++) {
  const id = nextRequestId();
  const at = Date.now();
  usage.push({
    request_id: id,
    account_id: 2,
    model: 'gpt-4o-mini',
    path: '/v1/chat/completions',
    day: '2026-11-28',
    prompt_tokens: 12,
    cached_tokens: 0,
    completion_tokens: 30,
    cost: 4_500,
    status: 200,
    outcome: 'completed',
    attempts: 1,
    usage_source: 'upstream',
    created_at: at,
    ...NO_LOG_DETAIL,
    latency_ms: 3,
    ttfb_ms: 2,
    client_ip: '127.0.0.1',
  });
  ledger.push({ account_id: 2, kind: 'usage', amount: -4_500, request_id: id, note: null, created_at: at });
}

/** The earlier hand-over: PER_STATEMENT rows' values per parameter list. */
function asArrays(): unknown[] {
  const ops: unknown[] = [];
  const groups = <R>(statement: number, rows: readonly R[], bind: (r: R, out: unknown[]) => void): void => {
    for (let i = 0; i < rows.length; i += PER_STATEMENT) {
      const args: unknown[] = [];
      for (let j = i; j < Math.min(rows.length, i + PER_STATEMENT); j++) bind(rows[j] as R, args);
      ops.push([statement, args]);
    }
  };
  groups(4, ledger, (l, out) => out.push(l.account_id, l.kind, l.amount, l.request_id, l.note, l.created_at));
  groups(6, usage, (u, out) =>
    out.push(
      u.request_id,
      u.account_id,
      u.model,
      u.path,
      u.day,
      u.prompt_tokens,
      u.cached_tokens,
      u.completion_tokens,
      u.cost,
      u.status,
      u.outcome,
      u.attempts,
      u.usage_source,
      u.created_at,
      u.stream,
      u.reasoning_tokens,
      u.images,
      u.audio_ms,
      u.characters,
      u.rates,
      u.latency_ms,
      u.ttfb_ms,
      u.client_ip,
      u.error_code,
    ),
  );
  return ops;
}

function packed(): PackedRows[] {
  return [packLedger(ledger, 4, 5, PER_STATEMENT), packUsage(usage, 6, 7, PER_STATEMENT)];
}

function time(label: string, run: () => unknown): number {
  for (let i = 0; i < 30; i++) run();
  const rounds = 300;
  const start = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) run();
  const nsPerRequest = Number(process.hrtime.bigint() - start) / rounds / ROWS;
  process.stdout.write(`${label.padEnd(44)} ${nsPerRequest.toFixed(0).padStart(6)} ns per request\n`);
  return nsPerRequest;
}

process.stdout.write(`${ROWS} requests per batch (a usage row and a ledger row each)\n`);
const arraysMessage = serialize({ id: 1, ops: asArrays() });
// Typed arrays serialized in place here; the writer thread gets them transferred (no copy).
const packedMessage = serialize({ id: 1, ops: packed() });
const sink = (_statement: number, _params: unknown[]): void => undefined;
const a1 = time('arrays: build + serialize (event loop)', () => serialize({ id: 1, ops: asArrays() }));
const a2 = time('arrays: deserialize (writer thread)', () => deserialize(arraysMessage));
const p1 = time('packed: pack + serialize (event loop)', () => serialize({ id: 1, ops: packed() }));
const p2 = time('packed: deserialize + unpack (writer thread)', () => {
  const m = deserialize(packedMessage) as { ops: PackedRows[] };
  for (const op of m.ops) unpackRows(op, sink);
});
process.stdout.write(
  `event loop ${(a1 / 1000).toFixed(2)} → ${(p1 / 1000).toFixed(2)} µs, writer thread ` +
    `${(a2 / 1000).toFixed(2)} → ${(p2 / 1000).toFixed(2)} µs per request\n`,
);
