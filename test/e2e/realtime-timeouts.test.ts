// End-to-end: realtime sessions that end on time — idle timeout, maximum duration, a peer that stops
// answering pings — and sessions closed by a gateway shutdown (1001, settled before the store closes).
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createChild } from '../support/accounts.js';
import { ROOT_KEY, startGateway, type TestGateway } from '../support/gateway.js';
import { attachMockRealtime, openRealtime, type MockRealtime } from '../support/mock-realtime.js';
import { startMockUpstream, waitFor, type MockUpstream } from '../support/mock-upstream.js';

const K1 = 'sk-upstream-rt-time-aaaaaaaaaaaaaa0001';
const IDLE_MS = 400;
const MAX_MS = 900;
let mock: MockUpstream;
let rt: MockRealtime;
let gw: TestGateway;

beforeAll(async () => {
  mock = await startMockUpstream();
  rt = attachMockRealtime(mock);
  gw = await startGateway({
    OPENAI_API_BASE: mock.url,
    INIT_KEYS: K1,
    REALTIME_IDLE_TIMEOUT_MS: String(IDLE_MS),
    REALTIME_MAX_SESSION_MS: String(MAX_MS),
  });
});
afterAll(async () => {
  await gw.stop();
  rt.close();
  await mock.close();
});
beforeEach(() => rt.reset());

async function sessionsOver(g: TestGateway = gw): Promise<void> {
  await waitFor(() => g.app.realtime.stats().sessions === 0);
}

/** Sends an event every `ms` until stopped (the mock does not answer audio appends). */
function keepTalking(send: () => void, ms: number): () => void {
  const timer = setInterval(send, ms);
  return () => clearInterval(timer);
}

const append = { type: 'input_audio_buffer.append', audio: 'AAAA' };

describe('timeouts', () => {
  it('closes an idle session with an error event and 1000, and settles it', async () => {
    const started = Date.now();
    const c = await openRealtime(gw.url, { key: ROOT_KEY });
    await c.next('session.created');
    const closed = await c.closed;
    expect(Date.now() - started).toBeGreaterThanOrEqual(IDLE_MS - 20);
    expect(closed).toEqual({ code: 1000, reason: 'session_idle_timeout' });
    expect((await c.next('error'))['error']).toMatchObject({ code: 'session_idle_timeout' });
    expect((await (await rt.session(1)).closed).code).toBe(1000);
    await sessionsOver();
  });

  it('closes a busy session at its maximum duration', async () => {
    const started = Date.now();
    const c = await openRealtime(gw.url, { key: ROOT_KEY });
    const stop = keepTalking(() => c.send(append), 100);
    try {
      const closed = await c.closed;
      expect(Date.now() - started).toBeGreaterThanOrEqual(MAX_MS - 20);
      expect(closed).toEqual({ code: 1000, reason: 'session_expired' });
      expect((await c.next('error'))['error']).toMatchObject({ code: 'session_expired' });
    } finally {
      stop();
    }
    await sessionsOver();
  });
});

describe('keep-alive', () => {
  it('pings both sides, and ends the session when upstream stops answering', async () => {
    const c = await openRealtime(gw.url, { key: ROOT_KEY });
    await c.next('session.created');
    const s = await rt.session(1);
    s.answerPings = false;
    const stop = keepTalking(() => c.send(append), 50);
    try {
      const closed = await c.closed;
      expect(closed).toEqual({ code: 1011, reason: 'upstream not responding' });
      expect((await c.next('error'))['error']).toMatchObject({ code: 'upstream_unreachable' });
    } finally {
      stop();
    }
    expect(s.pings).toBeGreaterThanOrEqual(1);
    expect(c.pings).toBeGreaterThanOrEqual(1);
    await sessionsOver();
  });

  it('terminates a client that stops answering pings and tells upstream', async () => {
    const c = await openRealtime(gw.url, { key: ROOT_KEY, options: { autoPong: false } });
    await c.next('session.created');
    expect((await c.closed).code).toBe(1006);
    expect(await (await rt.session(1)).closed).toEqual({ code: 1011, reason: 'client not responding' });
    await sessionsOver();
  });
});

describe('shutdown', () => {
  it('closes sessions with 1001, bills the cancelled responses, then refuses new sessions with 503', async () => {
    const own = await startGateway({ OPENAI_API_BASE: mock.url, INIT_KEYS: K1 });
    const key = await createChild(own, 'sd-user', 10);
    rt.plan({ hold: true });
    const c = await openRealtime(own.url, { key });
    await c.next('session.created');
    c.send({ type: 'response.create' });
    await c.next('response.created');
    const stopping = own.stop();

    // An upgrade that arrives while draining (on a connection that was already open) gets 503.
    const req = new IncomingMessage(new Socket());
    req.method = 'GET';
    req.url = '/v1/realtime?model=gpt-realtime';
    req.headers = {
      upgrade: 'websocket',
      connection: 'Upgrade',
      'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      'sec-websocket-version': '13',
      authorization: `Bearer ${key}`,
    };
    const out = new PassThrough();
    let answer = '';
    out.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    own.app.realtime.handleUpgrade(req, out, Buffer.alloc(0));
    await waitFor(() => answer.includes('}'));
    expect(answer).toMatch(/^HTTP\/1\.1 503 /);
    expect(answer).toContain('"code":"server_shutting_down"');

    expect(await c.closed).toEqual({ code: 1001, reason: 'server_shutting_down' });
    expect((await c.next('error'))['error']).toMatchObject({ code: 'server_shutting_down' });
    const s = await rt.session(1);
    expect(s.received.some((e) => e['type'] === 'response.cancel')).toBe(true);
    expect((await s.closed).code).toBe(1001);
    await stopping;

    // Settled before the store closed: the rows are there after a restart.
    const again = await own.restart();
    try {
      const a = await again.app.accounts.byName('sd-user');
      const rows = await again.app.store.db
        .selectFrom('usage_records')
        .selectAll()
        .where('account_id', '=', a?.id ?? -1)
        .orderBy('request_id')
        .execute();
      const cancelled = Math.ceil((1200 * 4_000_000 + 7 * 16_000_000) / 1_000_000);
      expect(rows.map((r) => [r.status, r.cost])).toEqual([
        [101, 0],
        [200, cancelled],
      ]);
      expect(a?.creditUsed).toBe(cancelled);
    } finally {
      await again.stop();
    }
  });
});
