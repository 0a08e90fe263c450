// End-to-end: realtime sessions over WebSocket with the official SDK and raw `ws` clients — exact
// billing of text, audio (with cached tokens) and transcription, and both ways of authenticating.
import { once } from 'node:events';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';
import { OpenAIRealtimeWS as BetaRealtimeWS } from 'openai/beta/realtime/ws';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { liveBalance } from '../../src/accounts/cards.js';
import { createChild, updateChild, loadedByName } from '../support/accounts.js';
import { ROOT_KEY, startGateway, type TestGateway } from '../support/gateway.js';
import {
  AUDIO_USAGE,
  attachMockRealtime,
  openRealtime,
  plainSocket,
  type MockRealtime,
} from '../support/mock-realtime.js';
import { startMockUpstream, waitFor, type MockUpstream } from '../support/mock-upstream.js';

const K1 = 'sk-upstream-realtime-aaaaaaaaaaaaaa0001';
let mock: MockUpstream;
let rt: MockRealtime;
let gw: TestGateway;

beforeAll(async () => {
  mock = await startMockUpstream();
  rt = attachMockRealtime(mock);
  gw = await startGateway({ OPENAI_API_BASE: mock.url, INIT_KEYS: K1 });
});
afterAll(async () => {
  await gw.stop();
  rt.close();
  await mock.close();
});
beforeEach(() => rt.reset());

function account(name: string) {
  const a = loadedByName(gw.app, name);
  if (a === undefined) throw new Error(`no account ${name}`);
  return a;
}

/** gpt-realtime list prices, micro-dollars per 1M tokens (config/prices.json). */
const GPT_REALTIME = {
  text: 4_000_000,
  cached: 400_000,
  output: 16_000_000,
  audioIn: 32_000_000,
  audioOut: 64_000_000,
  image: 5_000_000,
};

/** The exact charge of one realtime usage, computed by hand: Σ tokens × price, rounded up once. */
function realtimeCost(u: {
  text?: number;
  cachedText?: number;
  audio?: number;
  cachedAudio?: number;
  image?: number;
  outText?: number;
  outAudio?: number;
}): number {
  const p = GPT_REALTIME;
  const sum =
    (u.text ?? 0) * p.text +
    (u.cachedText ?? 0) * p.cached +
    (u.audio ?? 0) * p.audioIn +
    (u.cachedAudio ?? 0) * p.cached +
    (u.image ?? 0) * p.image +
    (u.outText ?? 0) * p.output +
    (u.outAudio ?? 0) * p.audioOut;
  return Math.ceil(sum / 1_000_000);
}

/** TEXT_USAGE: 688 uncached + 512 cached text in, 40 text out. */
const TEXT_COST = realtimeCost({ text: 688, cachedText: 512, outText: 40 });

async function sessionsOver(): Promise<void> {
  await waitFor(() => gw.app.realtime.stats().sessions === 0);
  await gw.app.writer.flush();
}

async function usageRows(accountId: number) {
  await gw.app.writer.flush();
  return gw.app.store.db
    .selectFrom('usage_records')
    .selectAll()
    .where('account_id', '=', accountId)
    .orderBy('request_id')
    .execute();
}

async function ledgerSum(accountId: number): Promise<number> {
  await gw.app.writer.flush();
  const rows = await gw.app.store.db
    .selectFrom('ledger')
    .select('amount')
    .where('account_id', '=', accountId)
    .where('kind', '=', 'usage')
    .execute();
  return rows.reduce((s, r) => s + Number(r.amount), 0);
}

const userText = (text: string) => ({
  type: 'conversation.item.create',
  item: { type: 'message', role: 'user', content: [{ type: 'input_text', text }] },
});

describe('billing', () => {
  it('bills a text response exactly at the realtime price (official SDK, GA)', async () => {
    const key = await createChild(gw, 'rt-text', 10);
    const session = new OpenAIRealtimeWS(
      { model: 'gpt-realtime', options: { createConnection: plainSocket } },
      gw.client(key),
    );
    session.on('error', (err) => expect.fail(err.message));
    await once(session.socket, 'open');
    let text = '';
    session.on('response.output_text.delta', (e) => (text += e.delta));
    const done = new Promise((resolve) => session.on('response.done', resolve));
    session.send({
      type: 'conversation.item.create',
      item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hi' }] },
    });
    session.send({ type: 'response.create' });
    await done;
    expect(text).toBe('Hello from the realtime mock.');
    session.close();
    await sessionsOver();

    const a = account('rt-text');
    expect(a.reserved).toBe(0);
    expect(a.creditUsed).toBe(TEXT_COST);
    expect(liveBalance(a.cards, Date.now())).toBe(10_000_000 - TEXT_COST);
    expect(await ledgerSum(a.id)).toBe(-TEXT_COST);
    const rows = await usageRows(a.id);
    expect(rows).toHaveLength(2);
    const [sessionRow, responseRow] = rows;
    expect(sessionRow).toMatchObject({ path: '/v1/realtime', model: 'gpt-realtime', cost: 0, status: 101 });
    expect(responseRow).toMatchObject({
      request_id: `${sessionRow?.request_id}:1`,
      model: 'gpt-realtime',
      prompt_tokens: 1200,
      cached_tokens: 512,
      completion_tokens: 40,
      cost: TEXT_COST,
      usage_source: 'upstream',
      outcome: 'completed',
    });
    // The pool key went upstream; the account key did not.
    expect(rt.handshakes).toHaveLength(1);
    expect(rt.handshakes[0]?.key).toBe(K1);
    expect(JSON.stringify(rt.handshakes[0]?.headers)).not.toContain(key);
  });
});

describe('billing, more', () => {
  it('bills an audio response with cached text and audio and image input exactly (beta SDK)', async () => {
    const key = await createChild(gw, 'rt-audio', 10);
    rt.plan({ modality: 'audio', usage: AUDIO_USAGE });
    const session = new BetaRealtimeWS(
      { model: 'gpt-realtime', options: { createConnection: plainSocket } },
      gw.client(key),
    );
    session.on('error', (err) => expect.fail(err.message));
    await once(session.socket, 'open');
    let transcript = '';
    let audioDeltas = 0;
    session.on('response.audio.delta', () => audioDeltas++);
    session.on('response.audio_transcript.delta', (e) => (transcript += e.delta));
    const done = new Promise((resolve) => session.on('response.done', resolve));
    session.send({ type: 'response.create' });
    await done;
    session.close();
    await sessionsOver();
    expect(audioDeltas).toBe(5);
    expect(transcript).toBe('Hello from the realtime mock.');
    expect(rt.handshakes[0]?.headers['openai-beta']).toBe('realtime=v1');

    // 300 text (200 cached), 1,500 audio (600 cached), 200 image in; 100 text, 400 audio out.
    const expected = realtimeCost({
      text: 100,
      cachedText: 200,
      audio: 900,
      cachedAudio: 600,
      image: 200,
      outText: 100,
      outAudio: 400,
    });
    expect(expected).toBe(57_720);
    const a = account('rt-audio');
    expect(a.creditUsed).toBe(expected);
    expect(a.reserved).toBe(0);
    expect(await ledgerSum(a.id)).toBe(-expected);
    const rows = await usageRows(a.id);
    expect(rows.map((r) => r.cost)).toEqual([0, expected]);
    expect(rows[1]).toMatchObject({ prompt_tokens: 2000, cached_tokens: 800, completion_tokens: 500 });
  });

  it('bills input transcription at the transcription model price when it arrives', async () => {
    const key = await createChild(gw, 'rt-transcribe', 10);
    const c = await openRealtime(gw.url, { key });
    await c.next('session.created');
    c.send({
      type: 'session.update',
      session: { type: 'realtime', audio: { input: { transcription: { model: 'gpt-4o-transcribe' } } } },
    });
    await c.next('session.updated');
    c.send({ type: 'input_audio_buffer.append', audio: Buffer.alloc(48_000).toString('base64') });
    c.send({ type: 'input_audio_buffer.commit' });
    await c.next('conversation.item.input_audio_transcription.completed');
    // Whisper-style usage, billed by duration.
    rt.plan({ transcriptionUsage: { type: 'duration', seconds: 12 } });
    c.send({
      type: 'session.update',
      session: { type: 'realtime', audio: { input: { transcription: { model: 'whisper-1' } } } },
    });
    await c.next('session.updated', c.count('session.updated') + 1);
    c.send({ type: 'input_audio_buffer.commit' });
    await waitFor(() => c.count('conversation.item.input_audio_transcription.completed') === 2);
    c.socket.close();
    await sessionsOver();

    // gpt-4o-transcribe: 280 audio tokens × $6 + 20 text × $2.5 + 50 out × $10 per 1M.
    const tokens = Math.ceil((280 * 6_000_000 + 20 * 2_500_000 + 50 * 10_000_000) / 1_000_000);
    // whisper-1: 12 s × $0.006 per minute.
    const duration = 1_200;
    const a = account('rt-transcribe');
    expect(a.creditUsed).toBe(tokens + duration);
    expect(a.reserved).toBe(0);
    const rows = await usageRows(a.id);
    expect(rows.map((r) => [r.model, r.cost])).toEqual([
      ['gpt-realtime', 0],
      ['gpt-4o-transcribe', 2_230],
      ['whisper-1', 1_200],
    ]);
  });

  it('refuses a transcription model without a price or outside the ACL, and a model change', async () => {
    const key = await createChild(gw, 'rt-acl', 10);
    const r = await updateChild(gw, 'rt-acl', { AllowModels: ['gpt-realtime', 'gpt-4o-transcribe'] });
    expect(r.status).toBe(200);
    const c = await openRealtime(gw.url, { key });
    await c.next('session.created');
    c.send({
      type: 'session.update',
      event_id: 'evt_client_1',
      session: { audio: { input: { transcription: { model: 'whisper-1' } } } },
    });
    const denied = await c.next('error');
    expect(denied['error']).toMatchObject({ code: 'model_not_allowed', event_id: 'evt_client_1' });
    c.send({ type: 'session.update', session: { model: 'gpt-realtime-mini' } });
    const changed = await c.next('error', c.events.indexOf(denied) + 1);
    expect(changed['error']).toMatchObject({ code: 'invalid_value', param: 'session.model' });
    c.socket.close();
    await sessionsOver();
    const s = rt.sessions[0];
    expect(s?.received.filter((e) => e['type'] === 'session.update')).toHaveLength(0);
  });

  it('reserves and bills a response upstream starts by itself (server VAD)', async () => {
    const key = await createChild(gw, 'rt-vad', 10);
    rt.plan({ autoRespond: true });
    const c = await openRealtime(gw.url, { key });
    await c.next('session.created');
    c.send({ type: 'input_audio_buffer.append', audio: Buffer.alloc(4800).toString('base64') });
    c.send({ type: 'input_audio_buffer.commit' });
    await c.next('response.done');
    c.socket.close();
    await sessionsOver();
    const a = account('rt-vad');
    expect(a.creditUsed).toBe(TEXT_COST);
    expect(a.reserved).toBe(0);
  });

  it('releases the reservation of a response.create upstream refuses, matched by event id', async () => {
    const key = await createChild(gw, 'rt-refused', 10);
    rt.plan({ rejectCreate: true });
    const c = await openRealtime(gw.url, { key });
    await c.next('session.created');
    c.send(userText('hello'));
    c.send({ type: 'response.create' });
    const err = await c.next('error');
    // The gateway gave the event an id so upstream's error names it; the client sees that id.
    const forwarded = (await rt.session(1)).received.find((e) => e['type'] === 'response.create');
    expect(forwarded?.['event_id']).toMatch(/^evt_gw_/);
    expect((err['error'] as Record<string, unknown>)['event_id']).toBe(forwarded?.['event_id']);
    await waitFor(() => account('rt-refused').reserved === 0);
    c.socket.close();
    await sessionsOver();
    const rows = await usageRows(account('rt-refused').id);
    expect(rows.map((r) => [r.cost, r.status])).toEqual([
      [0, 101],
      [0, 400],
    ]);
  });
});

describe('authentication', () => {
  it('accepts the key in the subprotocol browsers use, and never forwards it', async () => {
    const key = await createChild(gw, 'rt-browser', 10);
    const c = await openRealtime(gw.url, {
      protocols: ['realtime', `openai-insecure-api-key.${key}`, 'openai-beta.realtime-v1'],
    });
    expect(c.socket.protocol).toBe('realtime');
    expect(c.upgradeHeaders['x-request-id']).toMatch(/^req_/);
    await c.next('session.created');
    c.send({ type: 'response.create' });
    await c.next('response.done');
    c.socket.close();
    await sessionsOver();
    const h = rt.handshakes[0];
    expect(h?.key).toBe(K1);
    expect(h?.protocols).toEqual(['realtime', 'openai-beta.realtime-v1']);
    expect(JSON.stringify(h?.headers)).not.toContain(key);
    expect(account('rt-browser').creditUsed).toBe(TEXT_COST);
  });

  it('counts sessions and settled responses on /metrics', async () => {
    const c = await openRealtime(gw.url, { key: ROOT_KEY });
    await c.next('session.created');
    const open = await (await fetch(`${gw.url}/metrics`)).text();
    expect(open).toMatch(/^proxyxai_realtime_sessions 1$/m);
    c.send({ type: 'response.create' });
    await c.next('response.done');
    c.socket.close();
    await sessionsOver();
    const after = await (await fetch(`${gw.url}/metrics`)).text();
    expect(after).toMatch(/^proxyxai_realtime_sessions 0$/m);
    expect(after).toMatch(/^proxyxai_realtime_responses_total\{outcome="completed"\} [1-9]/m);
  });

  it('accepts a bare key in the Authorization header', async () => {
    const key = await createChild(gw, 'rt-bare', 10);
    const c = await openRealtime(gw.url, { headers: { authorization: key } });
    await c.next('session.created');
    expect(c.socket.protocol).toBe('');
    c.socket.close();
    await sessionsOver();
    expect(account('rt-bare').reserved).toBe(0);
  });
});
