// Hostile or broken peers against a real gateway process: hundreds of slowloris connections
// (headers sent a byte a second) do not delay normal clients and are closed by the headers
// timeout; thousands of idle keep-alive connections are held with bounded memory; an upstream
// that hangs or drops a stream gives the client a clear error or a terminated stream, and the
// account is charged at most what was delivered.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { expectConsistent, readBooks } from './books.js';

const ROOT_KEY = 'sk-Xvs' + 'H'.repeat(22) + 'ostile0123456789abcdefg';
const K = 'sk-upstream-faults-hostile-0000001';
const SLOWLORIS = 300;
const IDLE = 2_000;
const HEADERS_TIMEOUT_MS = 2_000;

let mock: MockUpstream;
let gw: GatewayProcess;
let key: string;
const dataDir = mkdtempSync(join(tmpdir(), 'proxyxai-faults-hostile-'));
const sockets: Socket[] = [];

beforeAll(async () => {
  mock = await startMockUpstream({ stream: { chunks: 20, intervalMs: 20, content: 'one two three four' } });
  gw = await startGatewayProcess({
    DATA_DIR: dataDir,
    INIT_USERS: `root:root@example.com:${ROOT_KEY}`,
    INIT_KEYS: K,
    MASTER_KEY: 'e5'.repeat(32),
    OPENAI_API_BASE: mock.url,
    HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
    UPSTREAM_TIMEOUT_MS: '3000',
    UPSTREAM_ATTEMPT_TIMEOUT_MS: '1500',
  });
  const r = await fetch(`${gw.url}/x-users`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ROOT_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ Name: 'victim', Email: 'victim@example.com', CreditGranted: 50 }),
  });
  key = ((await r.json()) as { User: { SecretKey: string } }).User.SecretKey;
}, 60_000);

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await gw?.stop();
  await mock?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

async function chatLatency(): Promise<number> {
  const started = performance.now();
  const r = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
  });
  await r.arrayBuffer();
  expect(r.status).toBe(200);
  return performance.now() - started;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

it('slowloris: hundreds of senders of one header byte a second delay nobody and are closed', async () => {
  const before: number[] = [];
  for (let i = 0; i < 20; i++) before.push(await chatLatency());
  const slow = await Promise.all(Array.from({ length: SLOWLORIS }, () => open(gw.port)));
  sockets.push(...slow);
  let closed = 0;
  for (const s of slow) {
    s.on('error', () => undefined);
    s.once('close', () => closed++);
    s.write('POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nX-Slow: ');
  }
  const drip = setInterval(() => {
    for (const s of slow) if (!s.destroyed) s.write('a');
  }, 1_000);
  try {
    const during: number[] = [];
    for (let i = 0; i < 20; i++) during.push(await chatLatency());
    // Normal clients are served as before (a loaded 2-core machine: a generous bound).
    expect(median(during)).toBeLessThan(Math.max(50, 5 * median(before)));
    // The headers timeout closes every slow sender (checked a few times a timeout).
    const deadline = Date.now() + HEADERS_TIMEOUT_MS * 4;
    while (closed < SLOWLORIS && Date.now() < deadline) await sleep(100);
    console.log(
      `slowloris: ${SLOWLORIS} senders, median latency ${median(before).toFixed(1)} → ${median(during).toFixed(1)} ms, ${closed} closed`,
    );
    expect(closed).toBe(SLOWLORIS);
  } finally {
    clearInterval(drip);
  }
  expect(await chatLatency()).toBeLessThan(1_000);
}, 60_000);

it('holds thousands of idle keep-alive connections with bounded memory', async () => {
  const rssBefore = rssKb(gw.pid);
  const idle: Socket[] = [];
  for (let i = 0; i < IDLE; i += 200) {
    const batch = await Promise.all(Array.from({ length: Math.min(200, IDLE - i) }, () => open(gw.port)));
    for (const s of batch) {
      s.on('error', () => undefined);
      // One request each, then the connection stays open, idle (keep-alive).
      s.write(`GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: keep-alive\r\n\r\n`);
    }
    idle.push(...batch);
  }
  sockets.push(...idle);
  await sleep(1_000);
  const open_ = idle.filter((s) => !s.destroyed).length;
  const perConnection = ((rssKb(gw.pid) - rssBefore) * 1024) / IDLE;
  console.log(`idle keep-alive: ${open_} of ${IDLE} open, ${(perConnection / 1024).toFixed(1)} kB RSS each`);
  expect(open_).toBe(IDLE);
  expect(perConnection).toBeLessThan(32 * 1024);
  // And the gateway still answers at once.
  expect(await chatLatency()).toBeLessThan(1_000);
  for (const s of idle) s.destroy();
}, 60_000);

it('an upstream that hangs or drops a stream: a clear error or a cut stream, never charged more than delivered', async () => {
  const before = readBooks(dataDir);
  // Hangs: every attempt times out; the client gets an OpenAI-shaped error, nothing is charged.
  mock.setKey(K, { kind: 'hang' });
  const hung = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hang' }] }),
  });
  const err = (await hung.json()) as { error?: { message?: string; type?: string; code?: string | null } };
  expect(hung.status).toBeGreaterThanOrEqual(500);
  expect(typeof err.error?.message).toBe('string');
  expect(typeof err.error?.type).toBe('string');
  // Drops mid-stream: the client's stream is cut (no [DONE]); what was delivered is what is charged.
  mock.setKey(K, { kind: 'drop-mid-stream', afterChunks: 5 });
  const dropped = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'gpt-4o-mini',
      stream: true,
      messages: [{ role: 'user', content: 'drop' }],
    }),
  });
  const text = await dropped.text().catch(() => '');
  expect(text).not.toContain('[DONE]');
  mock.setKey(K, { kind: 'ok' });
  expect(await chatLatency()).toBeLessThan(1_000);
  await sleep(1_500); // one flush
  const after = readBooks(dataDir);
  expectConsistent(after, 'after a hung and a dropped upstream');
  // The cut stream costs at most its full answer at list price: a few micro-dollars here.
  const spent =
    after.accounts.find((a) => a.name === 'victim')!.creditUsed -
    before.accounts.find((a) => a.name === 'victim')!.creditUsed;
  expect(spent).toBeGreaterThan(0);
  expect(spent).toBeLessThan(1_000);
}, 60_000);

it('an upstream that answers a success that is not JSON: a clear 502, nothing charged', async () => {
  const before = readBooks(dataDir);
  mock.setKey(K, {
    kind: 'status',
    status: 200,
    body: '<html><body>502 Bad Gateway</body></html>',
    headers: { 'content-type': 'application/json' },
  });
  const r = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'garbage' }] }),
  });
  const body = (await r.json()) as { error?: { code?: string; type?: string; message?: string } };
  expect(r.status).toBe(502);
  expect(body.error?.code).toBe('upstream_invalid_response');
  expect(body.error?.type).toBe('server_error');
  mock.setKey(K, { kind: 'ok' });
  expect(await chatLatency()).toBeLessThan(1_000);
  await sleep(1_500); // one flush
  const after = readBooks(dataDir);
  expectConsistent(after, 'after an answer that is not JSON');
  const used = (b: typeof after): number => b.accounts.find((a) => a.name === 'victim')!.creditUsed;
  // Only the normal request after it was charged: a few micro-dollars.
  expect(used(after) - used(before)).toBeLessThan(100);
}, 60_000);
