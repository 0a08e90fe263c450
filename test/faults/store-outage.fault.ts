// The store fails during flushes (every write of the state writer's sink throws, as on a full or
// broken disk): requests are served from memory while the unwritten rows stay within their bound,
// /readyz says why it is not ready, past the bound metered requests are refused with 503
// store_unavailable (never served unbilled) while free ones still pass, a crash in the middle of it
// loses nothing (the journal has every served request), and once the store is back everything is
// written and the gateway is ready again.
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import type { BatchSink } from '../../src/store/batch-sink.js';
import { createChild } from '../support/accounts.js';
import { call, startGateway, type TestGateway } from '../support/gateway.js';
import { startMockUpstream, waitFor, type MockUpstream } from '../support/mock-upstream.js';
import { expectConsistent, readBooks } from './books.js';

const KEY = 'sk-upstream-faults-outage-00000001';
/** Usage and ledger rows that may wait for the store: a metered request adds two. */
const BOUND = 60;

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function chat(gw: TestGateway, key: string, n: number): Promise<Response> {
  return call(gw, '/v1/chat/completions', {
    key,
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `outage ${n}` }] },
  });
}

it('serves within the bound, refuses past it, reports it, loses nothing to a crash, and writes everything when the store is back', async () => {
  const mock: MockUpstream = await startMockUpstream();
  cleanups.push(() => mock.close());
  let failing = false;
  const faulty = (sink: BatchSink): BatchSink => ({
    write: (batch) => (failing ? Promise.reject(new Error('disk I/O error (injected)')) : sink.write(batch)),
  });
  const env = { OPENAI_API_BASE: mock.url, INIT_KEYS: KEY, FLUSH_INTERVAL_MS: '50', LOG_LEVEL: 'fatal' };
  const gw = await startGateway(env, { app: { batchSink: faulty, maxBacklog: BOUND } });
  cleanups.push(() => rmSync(gw.dataDir, { recursive: true, force: true }));
  cleanups.push(() => gw.stop());
  const key = await createChild(gw, 'alice', 100);
  const before: string[] = [];
  for (let i = 0; i < 3; i++) before.push((await chat(gw, key, i)).headers.get('x-request-id')!);

  await gw.app.writer.flush();
  failing = true;
  const failedAt = Date.now();
  // Served from memory until the rows waiting reach the bound, then refused with a clear 503.
  const served: string[] = [];
  let refusal: { status: number; code: string } | undefined;
  for (let i = 0; i < 10 * BOUND && refusal === undefined; i++) {
    const r = await chat(gw, key, 100 + i);
    if (r.status === 200) {
      served.push(r.headers.get('x-request-id')!);
      await r.arrayBuffer();
    } else {
      const body = (await r.json()) as { error: { code: string } };
      refusal = { status: r.status, code: body.error.code };
    }
  }
  expect(refusal).toEqual({ status: 503, code: 'store_unavailable' });
  // The request log lists this instance's requests once they are written: it cannot now (503, not 500).
  const logs = await call(gw, '/x-logs', { key, method: 'GET' });
  expect(logs.status).toBe(503);
  expect(((await logs.json()) as { error: { code: string } }).error.code).toBe('store_unavailable');
  // Refused once the rows reach the bound (counted from the first failed write on).
  expect(served.length).toBeGreaterThanOrEqual(BOUND / 2);
  expect(served.length).toBeLessThanOrEqual(BOUND / 2 + 5);
  // Free endpoints add nothing to the backlog: still served.
  expect((await call(gw, '/v1/models', { key })).status).toBe(200);
  const ready = await call(gw, '/readyz', { key: '' });
  expect(ready.status).toBe(503);
  const readiness = (await ready.json()) as { store: boolean; reasons: string[] };
  expect(readiness.store).toBe(false);
  expect(readiness.reasons.join(' ')).toMatch(/write\(s\) to the database failed/);

  // kill -9 now: what it leaves (the data directory as it is) starts with every served request.
  const crashed = mkdtempSync(join(tmpdir(), 'proxyxai-faults-outage-crash-'));
  cleanups.push(() => rmSync(crashed, { recursive: true, force: true }));
  cpSync(gw.dataDir, crashed, { recursive: true });
  const afterCrash = await startGateway(env, { dataDir: crashed });
  const crashBooks = readBooks(crashed);
  await afterCrash.stop();
  expectConsistent(crashBooks, 'restarted after a crash during the outage');
  expect([...before, ...served].filter((id) => !crashBooks.usage.has(id))).toEqual([]);

  // A few seconds of outage: the writer's retries back off to one every 2 s.
  await new Promise((r) => setTimeout(r, Math.max(0, 4_000 - (Date.now() - failedAt))));
  expect((await chat(gw, key, 5_000)).status).toBe(503);
  // The store is back: the writer catches up, /readyz turns ready, requests are served again.
  const outageMs = Date.now() - failedAt;
  const backAt = Date.now();
  failing = false;
  await waitFor(async () => (await call(gw, '/readyz', { key: '' })).status === 200, 10_000);
  const recoveryMs = Date.now() - backAt;
  await waitFor(() => readdirSync(join(gw.dataDir, 'journal')).length === 0, 5_000);
  expect((await chat(gw, key, 9_999)).status).toBe(200);
  await gw.app.writer.flush();
  const books = readBooks(gw.dataDir);
  expectConsistent(books, 'after the store came back');
  expect([...before, ...served].filter((id) => !books.usage.has(id))).toEqual([]);
  console.log(
    `store outage: ${JSON.stringify({ bound: BOUND, servedDuringOutage: served.length, outageMs, recoveryMs })}`,
  );
});
