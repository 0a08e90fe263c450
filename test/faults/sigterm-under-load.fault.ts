// SIGTERM under load (a real gateway process): every request in flight when the signal comes is
// answered whole, the process exits 0 within the drain time, every answer is billed and the
// journal is left empty. test/e2e/shutdown.test.ts, also part of this suite, checks the same for
// one stream of an in-process gateway.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { expectConsistent, readBooks } from './books.js';

const ROOT_KEY = 'sk-Xvs' + 'R'.repeat(20) + 'oot0123456789abcdefghijkl';
const STREAMS = 30;
const BODIES = 20;

let mock: MockUpstream | undefined;
let gw: GatewayProcess | undefined;
const dataDir = mkdtempSync(join(tmpdir(), 'proxyxai-faults-term-'));
afterAll(async () => {
  await gw?.crash();
  await mock?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

interface Answer {
  readonly id: string | null;
  readonly complete: boolean;
}

async function ask(url: string, key: string, stream: boolean, n: number): Promise<Answer> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: `in flight ${n}` }],
      ...(stream && { stream: true }),
    }),
  });
  const id = res.headers.get('x-request-id');
  if (!stream) {
    const body = (await res.json()) as { choices?: unknown[] };
    return { id, complete: res.status === 200 && Array.isArray(body.choices) };
  }
  const text = await res.text();
  return { id, complete: res.status === 200 && text.includes('data: [DONE]') };
}

it('answers every request in flight at SIGTERM whole, bills each one, exits 0 and leaves no journal', async () => {
  mock = await startMockUpstream({ stream: { chunks: 10, intervalMs: 60, content: 'a b c d e f g h i j' } });
  // Bodies take 400 ms upstream: they are in flight too when the signal comes.
  const SLOW = 'sk-upstream-faults-term-slow-000001';
  mock.setKey(SLOW, { kind: 'slow', delayMs: 400 });
  gw = await startGatewayProcess({
    DATA_DIR: dataDir,
    INIT_USERS: `root:root@example.com:${ROOT_KEY}`,
    INIT_KEYS: SLOW,
    MASTER_KEY: 'd4'.repeat(32),
    OPENAI_API_BASE: mock.url,
    DRAIN_TIMEOUT_MS: '10000',
    LOG_LEVEL: 'warn',
  });
  const r = await fetch(`${gw.url}/x-users`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ROOT_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ Name: 'alice', Email: 'alice@example.com', CreditGranted: 100 }),
  });
  const key = ((await r.json()) as { User: { SecretKey: string } }).User.SecretKey;
  const pending = [
    ...Array.from({ length: STREAMS }, (_, i) => ask(gw!.url, i % 2 === 0 ? key : ROOT_KEY, true, i)),
    ...Array.from({ length: BODIES }, (_, i) => ask(gw!.url, i % 2 === 0 ? key : ROOT_KEY, false, i)),
  ];
  // Every request has reached upstream: all are in flight.
  const deadline = Date.now() + 10_000;
  while (mock.requests.length < STREAMS + BODIES && Date.now() < deadline)
    await new Promise((res) => setTimeout(res, 10));
  expect(mock.requests).toHaveLength(STREAMS + BODIES);
  const signalled = Date.now();
  const exited = gw.stop();
  const answers = await Promise.all(pending);
  expect(await exited).toBe(0);
  const drainMs = Date.now() - signalled;
  gw = undefined;

  const books = readBooks(dataDir);
  expectConsistent(books, 'after SIGTERM');
  const incomplete = answers.filter((a) => !a.complete);
  const unbilled = answers.filter((a) => a.id === null || !books.usage.has(a.id));
  console.log(
    `SIGTERM under load: ${JSON.stringify({
      inFlight: answers.length,
      complete: answers.length - incomplete.length,
      unbilled: unbilled.length,
      drainMs,
    })}`,
  );
  expect(incomplete).toEqual([]);
  expect(unbilled).toEqual([]);
  expect(books.billedTwice).toEqual([]);
  expect(existsSync(join(dataDir, 'journal'))).toBe(false);
});
