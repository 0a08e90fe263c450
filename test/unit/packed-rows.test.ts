// The per-request rows travel to the writer thread packed (numbers in one typed array, strings in
// one table): unpacked, they must be the very parameter lists the statements took before.
import { describe, expect, it } from 'vitest';
import { NO_LOG_DETAIL, type LedgerRow, type UsageRow } from '../../src/store/batch-sink.js';
import { USAGE_COLUMNS } from '../../src/store/sqlite/batch-sink.js';
import {
  LEDGER_SHAPE,
  packLedger,
  packUsage,
  unpackRows,
  USAGE_SHAPE,
  type PackedRows,
} from '../../src/store/sqlite/packed-rows.js';

function row(i: number): UsageRow {
  return {
    request_id: `req_${i}`,
    account_id: 7 + i,
    model: i % 2 === 0 ? 'gpt-4o' : 'gpt-4o-mini',
    path: '/v1/chat/completions',
    day: '2026-11-28',
    prompt_tokens: 11 + i,
    cached_tokens: 3,
    completion_tokens: 13,
    cost: 9_007_199_254_740_000 + i,
    status: 200,
    outcome: 'completed',
    attempts: 2,
    usage_source: 'upstream',
    created_at: 1_800_000_000_000 + i,
    ...NO_LOG_DETAIL,
    latency_ms: i % 2 === 0 ? null : 40,
    client_ip: i % 3 === 0 ? null : '::1',
  };
}

function calls(p: PackedRows): { statement: number; params: unknown[] }[] {
  const out: { statement: number; params: unknown[] }[] = [];
  unpackRows(p, (statement, params) => out.push({ statement, params }));
  return out;
}

describe('packed rows', () => {
  it('unpacks a usage row to its values in USAGE_COLUMNS order, nulls kept', () => {
    const r = row(0);
    expect(USAGE_SHAPE).toHaveLength(USAGE_COLUMNS.length);
    const got = calls(packUsage([r], 1, 2, 32));
    expect(got).toEqual([{ statement: 2, params: USAGE_COLUMNS.map((c) => r[c]) }]);
    // The shape matches the columns' types.
    USAGE_COLUMNS.forEach((c, i) => {
      const v = row(1)[c];
      if (v !== null) expect(USAGE_SHAPE[i]).toBe(typeof v === 'number' ? 'n' : 's');
    });
  });

  it('groups full statements of `perStatement` rows and sends the rest one by one, in order', () => {
    const rows = Array.from({ length: 70 }, (_, i) => row(i));
    const got = calls(packUsage(rows, 1, 2, 32));
    expect(got.map((c) => c.statement)).toEqual([1, 1, 2, 2, 2, 2, 2, 2]);
    expect(got.flatMap((c) => c.params)).toEqual(rows.flatMap((r) => USAGE_COLUMNS.map((c) => r[c])));
  });

  it('sends a repeated string once and a request id without looking it up', () => {
    const p = packUsage(
      Array.from({ length: 10 }, (_, i) => row(i)),
      1,
      2,
      32,
    );
    // 10 ids + 2 models + path + day + outcome + source + '::1'.
    expect(p.strs).toHaveLength(17);
  });

  it('packs ledger rows, a missing request id and note included', () => {
    const rows: LedgerRow[] = [
      { account_id: 1, kind: 'usage', amount: -5, request_id: 'req_1', note: null, created_at: 10 },
      {
        account_id: 2,
        kind: 'grant',
        amount: 1_000_000,
        request_id: null,
        note: 'by "root" ✓',
        created_at: 11,
      },
    ];
    expect(LEDGER_SHAPE).toHaveLength(6);
    const got = calls(packLedger(rows, 4, 5, 32));
    expect(got).toEqual([
      { statement: 5, params: [1, 'usage', -5, 'req_1', null, 10] },
      { statement: 5, params: [2, 'grant', 1_000_000, null, 'by "root" ✓', 11] },
    ]);
  });

  it('runs the same from its own source text, as the writer thread embeds it', () => {
    const rebuilt = new Function(`${unpackRows.toString()}; return unpackRows;`)() as typeof unpackRows;
    const p = packUsage(
      Array.from({ length: 40 }, (_, i) => row(i)),
      1,
      2,
      32,
    );
    const got: { statement: number; params: unknown[] }[] = [];
    rebuilt(p, (statement, params) => got.push({ statement, params }));
    expect(got).toEqual(calls(p));
  });
});
