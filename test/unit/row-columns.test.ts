// The rows the state writer holds until a flush, column by column: every value comes back as it
// went in, in order, through growth and reuse, and a failed write puts its rows back in front.
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { Batch, BatchSink, LedgerRow, UsageRow } from '../../src/store/batch-sink.js';
import { LedgerColumns, UsageColumns } from '../../src/store/row-columns.js';
import { StateWriter } from '../../src/store/state-writer.js';

function usageRow(i: number): UsageRow {
  return {
    request_id: `req_${i}`,
    account_id: 1 + (i % 7),
    model: i % 2 === 0 ? 'gpt-4o-mini' : 'gpt-4o',
    path: '/v1/chat/completions',
    day: i % 3 === 0 ? '2026-11-27' : '2026-11-28',
    prompt_tokens: i * 3,
    cached_tokens: i % 5,
    completion_tokens: i * 2 + 1,
    // Money up to the largest exact integer: the columns are doubles.
    cost: i === 7 ? Number.MAX_SAFE_INTEGER : i * 1_234_567,
    status: i % 11 === 0 ? 502 : 200,
    outcome: i % 11 === 0 ? 'upstream-error' : 'completed',
    attempts: 1 + (i % 3),
    usage_source: i % 4 === 0 ? 'estimate' : 'upstream',
    created_at: 1_764_300_000_000 + i,
    stream: i % 2,
    reasoning_tokens: i % 13,
    images: i % 17 === 0 ? 2 : 0,
    audio_ms: i % 19 === 0 ? 1_500 : 0,
    characters: i % 23,
    rates: 1_000_000 + i,
    latency_ms: i % 6 === 0 ? null : i,
    ttfb_ms: i % 4 === 1 ? null : i % 50,
    client_ip: i % 9 === 0 ? null : `10.0.0.${i % 255}`,
    error_code: i % 11 === 0 ? 'upstream_error' : null,
  };
}

function ledgerRow(i: number): LedgerRow {
  return {
    account_id: 1 + (i % 7),
    kind: i % 10 === 0 ? 'grant' : 'usage',
    amount: i % 10 === 0 ? 5_000_000 : -i,
    request_id: i % 10 === 0 ? null : `req_${i}`,
    note: i % 10 === 0 ? 'top-up' : null,
    created_at: 1_764_300_000_000 + i,
  };
}

describe('row columns', () => {
  it('give back every usage row as it went in, in order, past their first capacity', () => {
    const cols = new UsageColumns();
    const rows = Array.from({ length: 3_000 }, (_, i) => usageRow(i));
    for (const r of rows) cols.push(r);
    expect(cols.length).toBe(3_000);
    expect(cols.take()).toEqual(rows);
    expect(cols.length).toBe(0);
    expect(cols.take()).toEqual([]);
  });

  it('give back every ledger row as it went in, nulls included', () => {
    const cols = new LedgerColumns();
    const rows = Array.from({ length: 2_500 }, (_, i) => ledgerRow(i));
    for (const r of rows) cols.push(r);
    expect(cols.take()).toEqual(rows);
  });

  it('give their memory back after a backlog: a take of many rows shrinks them to their start', () => {
    const cols = new UsageColumns();
    const start = cols.nums[0]!.length;
    const rows = Array.from({ length: 20_000 }, (_, i) => usageRow(i));
    for (const r of rows) cols.push(r);
    expect(cols.nums[0]!.length).toBeGreaterThanOrEqual(20_000);
    expect(cols.take()).toEqual(rows);
    expect(cols.nums[0]!.length).toBe(start);
    expect(cols.strs[0]!.length).toBe(start);
    const later = Array.from({ length: 1_500 }, (_, i) => usageRow(30_000 + i));
    for (const r of later) cols.push(r);
    expect(cols.take()).toEqual(later);
  });

  it('are reused after a take: only the rows pushed since, and no string of the earlier rows kept', () => {
    const cols = new UsageColumns();
    for (let i = 0; i < 50; i++) cols.push(usageRow(i));
    cols.take();
    expect(cols.strs.every((col) => col.every((v) => v === null))).toBe(true);
    const later = [usageRow(100), usageRow(101)];
    for (const r of later) cols.push(r);
    expect(cols.take()).toEqual(later);
  });
});

describe('the state writer with its rows in columns', () => {
  it('writes rows queued before a failed flush first, then those queued after it, each once', async () => {
    const written: Batch[] = [];
    let fail = true;
    const sink: BatchSink = {
      write(batch) {
        if (fail) return Promise.reject(new Error('store away'));
        written.push(batch);
        return Promise.resolve();
      },
    };
    const writer = new StateWriter(sink, pino({ level: 'silent' }), {
      flushIntervalMs: 60_000,
      statsInterval: 1_000_000,
    });
    const before = Array.from({ length: 40 }, (_, i) => i);
    const after = Array.from({ length: 25 }, (_, i) => 40 + i);
    for (const i of before) {
      writer.addUsage(usageRow(i));
      writer.addLedger(ledgerRow(i));
    }
    await expect(writer.flush()).rejects.toThrow('store away');
    expect(writer.queuedRows).toBe(80);
    for (const i of after) {
      writer.addUsage(usageRow(i));
      writer.addLedger(ledgerRow(i));
    }
    fail = false;
    await writer.flush();
    expect(written).toHaveLength(1);
    const all = [...before, ...after];
    expect(written[0]!.usage).toEqual(all.map(usageRow));
    expect(written[0]!.ledger).toEqual(all.map(ledgerRow));
    // The day totals are made from the same rows, once each.
    const requests = written[0]!.daily.reduce((n, d) => n + d.requests, 0);
    expect(requests).toBe(all.length);
    expect(writer.queuedRows).toBe(0);
  });
});
