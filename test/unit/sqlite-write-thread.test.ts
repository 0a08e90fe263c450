// The embedded store's batched writes run on a thread of their own: the event loop keeps turning
// while a big batch is written, a batch that fails is rolled back whole, and the main
// connection reads what the thread committed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NO_LOG_DETAIL, type Batch, type UsageRow } from '../../src/store/batch-sink.js';
import { openSqliteStore } from '../../src/store/sqlite/open-store.js';
import type { Store } from '../../src/store/store.js';

let dir: string;
let store: Store;

function usage(n: number, from = 0): UsageRow[] {
  return Array.from({ length: n }, (_, i) => ({
    request_id: `req_${String(from + i).padStart(7, '0')}`,
    account_id: 1,
    model: 'gpt-4o-mini',
    path: '/v1/chat/completions',
    day: '2026-11-27',
    prompt_tokens: 10,
    cached_tokens: 0,
    completion_tokens: 5,
    cost: 7,
    status: 200,
    outcome: 'completed',
    attempts: 1,
    usage_source: 'upstream',
    created_at: 1_800_000_000_000 + from + i,
    ...NO_LOG_DETAIL,
  }));
}

function batch(rows: UsageRow[]): Batch {
  return { accounts: [], cards: new Map(), deleted: [], ledger: [], usage: rows, daily: [], objects: [] };
}

async function count(): Promise<number> {
  const r = await store.db
    .selectFrom('usage_records')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirst();
  return Number(r?.n);
}

describe.each([
  ['on the writer thread', true],
  ['on the main connection (one core)', false],
] as const)('%s', (_name, threaded) => {
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'proxyxai-thread-'));
    store = await openSqliteStore(dir, threaded);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes a big batch that the main connection then reads (and, on the thread, the loop turns meanwhile)', async () => {
    let turns = 0;
    let done = false;
    const spin = (): void => {
      if (done) return;
      turns++;
      setImmediate(spin);
    };
    setImmediate(spin);
    await store.batchSink.write(batch(usage(30_000)));
    done = true;
    // Written on the main thread, the whole transaction runs before the first turn.
    if (threaded) expect(turns).toBeGreaterThan(0);
    else expect(turns).toBe(0);
    expect(await count()).toBe(30_000);
  });

  it('rolls a failing batch back whole: nothing of it is written, and the next batch is', async () => {
    const bad = usage(100, 1_000);
    // The same request id twice is ignored by design; a NOT NULL column left null fails the batch.
    (bad[60] as unknown as Record<string, unknown>)['model'] = null;
    await expect(store.batchSink.write(batch(bad))).rejects.toThrow(/NOT NULL/);
    expect(await count()).toBe(0);
    await store.batchSink.write(batch(usage(10, 5_000)));
    expect(await count()).toBe(10);
  });

  it('writes every column of the packed rows exactly, nulls and repeated strings included', async () => {
    const rows: UsageRow[] = usage(70, 9_000).map((u, i) => ({
      ...u,
      model: i % 3 === 0 ? 'gpt-4o' : 'gpt-4o-mini',
      outcome: i % 5 === 0 ? 'refused' : 'completed',
      cost: 2 ** 52 + i,
      stream: i % 2,
      latency_ms: i % 4 === 0 ? null : i,
      ttfb_ms: i % 4 === 1 ? null : 2 * i,
      client_ip: i % 2 === 0 ? null : `10.0.0.${i}`,
      error_code: i % 5 === 0 ? 'insufficient_quota' : null,
    }));
    const ledger = rows.map((u, i) => ({
      account_id: u.account_id,
      kind: i % 2 === 0 ? 'usage' : 'refund',
      amount: -u.cost,
      request_id: i === 3 ? null : u.request_id,
      note: i % 7 === 0 ? `note "${i}" \u2028 ✓` : null,
      created_at: u.created_at,
    }));
    await store.batchSink.write({ ...batch(rows), ledger });
    const got = await store.db.selectFrom('usage_records').selectAll().orderBy('request_id').execute();
    expect(got).toEqual(rows);
    const led = await store.db
      .selectFrom('ledger')
      .select(['account_id', 'kind', 'amount', 'request_id', 'note', 'created_at'])
      .orderBy('id')
      .execute();
    expect(led).toEqual(ledger);
  });
});
