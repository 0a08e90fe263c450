// End-to-end: how realtime sessions end and what is billed then — a client or upstream that leaves
// mid-response, a balance that runs out, a disabled account — plus close codes and back-pressure.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { liveBalance } from '../../src/accounts/cards.js';
import { countTextTokens } from '../../src/billing/token-count.js';
import { HIGH_WATER_BYTES } from '../../src/realtime/frame-pipe.js';
import { createChild, updateChild, loadedByName } from '../support/accounts.js';
import { ROOT_KEY, startGateway, type TestGateway } from '../support/gateway.js';
import { attachMockRealtime, openRealtime, type MockRealtime } from '../support/mock-realtime.js';
import { startMockUpstream, waitFor, type MockUpstream } from '../support/mock-upstream.js';

const K1 = 'sk-upstream-rt-life-aaaaaaaaaaaaaa0001';
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
  expect(gw.logs.join('\n')).not.toContain(K1);
});
beforeEach(() => rt.reset());

function account(name: string) {
  const a = loadedByName(gw.app, name);
  if (a === undefined) throw new Error(`no account ${name}`);
  return a;
}

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

const userText = (text: string) => ({
  type: 'conversation.item.create',
  item: { type: 'message', role: 'user', content: [{ type: 'input_text', text }] },
});

/** CANCELLED_USAGE at gpt-realtime prices: 1,200 text tokens × $4 + 7 × $16 per 1M. */
const CANCELLED_COST = Math.ceil((1200 * 4_000_000 + 7 * 16_000_000) / 1_000_000);

describe('a side leaves mid-response', () => {
  it('client gone: the response is cancelled upstream and its reported usage billed exactly', async () => {
    const key = await createChild(gw, 'lc-leaver', 10);
    rt.plan({ hold: true });
    const c = await openRealtime(gw.url, { key });
    await c.next('session.created');
    c.send(userText('hi'));
    c.send({ type: 'response.create' });
    const created = await c.next('response.created');
    await waitFor(() => c.count('response.output_text.delta') === 5);
    c.socket.close(1000, 'bye');
    const s = await rt.session(1);
    expect(await s.closed).toEqual({ code: 1000, reason: 'bye' });
    const responseId = (created['response'] as Record<string, unknown>)['id'];
    expect(s.received.find((e) => e['type'] === 'response.cancel')?.['response_id']).toBe(responseId);
    await sessionsOver();
    const a = account('lc-leaver');
    expect(a.reserved).toBe(0);
    expect(a.creditUsed).toBe(CANCELLED_COST);
    const rows = await usageRows(a.id);
    expect(rows[1]).toMatchObject({ outcome: 'client-gone', usage_source: 'upstream', cost: CANCELLED_COST });
  });

  it('client gone and upstream silent: after the grace, the delivered text is billed', async () => {
    const key = await createChild(gw, 'lc-silent', 10);
    rt.plan({ hold: true, answerCancel: false, deltas: ['one ', 'two ', 'three'] });
    const c = await openRealtime(gw.url, { key });
    await c.next('session.created');
    c.send({ type: 'response.create' });
    await waitFor(() => c.count('response.output_text.delta') === 3);
    c.socket.terminate();
    const s = await rt.session(1);
    // A client lost without a close frame (1006) is relayed as 1011.
    expect((await s.closed).code).toBe(1011);
    await sessionsOver();
    const a = account('lc-silent');
    const tokens = countTextTokens('gpt-realtime', 'one two three');
    expect(a.creditUsed).toBe(tokens * 16);
    expect(a.reserved).toBe(0);
    const rows = await usageRows(a.id);
    expect(rows[1]).toMatchObject({
      outcome: 'client-gone',
      usage_source: 'tokenizer',
      completion_tokens: tokens,
    });
  });

  it('upstream gone: the client gets an error and 1011, the delivered text is billed', async () => {
    const key = await createChild(gw, 'lc-dropped', 10);
    rt.plan({ hold: true, deltas: ['alpha ', 'beta ', 'gamma'] });
    const c = await openRealtime(gw.url, { key });
    await c.next('session.created');
    c.send({ type: 'response.create' });
    await waitFor(() => c.count('response.output_text.delta') === 3);
    (await rt.session(1)).terminate();
    expect((await c.closed).code).toBe(1011);
    expect((await c.next('error'))['error']).toMatchObject({ code: 'upstream_unreachable' });
    await sessionsOver();
    const a = account('lc-dropped');
    const tokens = countTextTokens('gpt-realtime', 'alpha beta gamma');
    expect(a.creditUsed).toBe(tokens * 16);
    expect(a.reserved).toBe(0);
    const rows = await usageRows(a.id);
    expect(rows[1]).toMatchObject({ outcome: 'upstream-error', usage_source: 'tokenizer', prompt_tokens: 0 });
  });
});

describe('money runs out', () => {
  it('refuses the response.create that does not fit: error event, 1008, never forwarded', async () => {
    const key = await createChild(gw, 'lc-broke', 2);
    // 50,000 text tokens in ($0.20) and 20,000 audio tokens out ($1.28).
    const usage = {
      input_tokens: 50_000,
      output_tokens: 20_000,
      input_token_details: { text_tokens: 50_000 },
      output_token_details: { audio_tokens: 20_000 },
    };
    rt.plan({ usage });
    const c = await openRealtime(gw.url, { key });
    await c.next('session.created');
    c.send({ type: 'response.create' });
    await c.next('response.done');
    c.send({ type: 'response.create', event_id: 'evt_again' });
    const err = await c.next('error');
    expect(err['error']).toMatchObject({
      type: 'insufficient_quota',
      code: 'insufficient_quota',
      message: 'Insufficient balance',
      event_id: 'evt_again',
    });
    expect(await c.closed).toEqual({ code: 1008, reason: 'insufficient_quota' });
    await sessionsOver();
    const s = await rt.session(1);
    expect(s.received.filter((e) => e['type'] === 'response.create')).toHaveLength(1);
    const a = account('lc-broke');
    expect(a.creditUsed).toBe(1_480_000);
    expect(liveBalance(a.cards, Date.now())).toBe(520_000);
    expect(a.reserved).toBe(0);
  });

  it('never charges past the balance, and cancels a response upstream starts without money', async () => {
    const key = await createChild(gw, 'lc-drained', 2);
    // 40,000 audio tokens out cost $2.56, more than the $2 there is.
    rt.plan({
      usage: { input_tokens: 10, output_tokens: 40_000, output_token_details: { audio_tokens: 40_000 } },
    });
    const c = await openRealtime(gw.url, { key });
    await c.next('session.created');
    c.send({ type: 'response.create' });
    await c.next('response.done');
    const a = account('lc-drained');
    expect(a.creditUsed).toBe(2_000_000);
    expect(liveBalance(a.cards, Date.now())).toBe(0);
    // Server VAD starts a response by itself: it cannot be reserved, so it is cancelled.
    rt.plan({ autoRespond: true, hold: true });
    c.send({ type: 'input_audio_buffer.commit' });
    expect((await c.next('error'))['error']).toMatchObject({ code: 'insufficient_quota' });
    expect((await c.closed).code).toBe(1008);
    const s = await rt.session(1);
    expect(s.received.some((e) => e['type'] === 'response.cancel')).toBe(true);
    await sessionsOver();
    expect(a.creditUsed).toBe(2_000_000);
    expect(a.reserved).toBe(0);
    const rows = await usageRows(a.id);
    expect(rows.map((r) => r.cost)).toEqual([0, 2_000_000, 0]);
  });

  it('ends the session at the next response when the account was disabled meanwhile', async () => {
    const key = await createChild(gw, 'lc-disabled', 10);
    const c = await openRealtime(gw.url, { key });
    await c.next('session.created');
    await updateChild(gw, 'lc-disabled', { Status: false });
    c.send({ type: 'response.create' });
    expect((await c.next('error'))['error']).toMatchObject({ code: 'account_deactivated' });
    expect((await c.closed).code).toBe(1008);
    await sessionsOver();
    expect(account('lc-disabled').reserved).toBe(0);
  });
});

describe('close codes', () => {
  it('relays a client close code and reason to upstream', async () => {
    const c = await openRealtime(gw.url, { key: ROOT_KEY });
    await c.next('session.created');
    c.socket.close(4001, 'client says bye');
    expect(await (await rt.session(1)).closed).toEqual({ code: 4001, reason: 'client says bye' });
    await sessionsOver();
  });

  it('relays an upstream close code and reason to the client', async () => {
    const c = await openRealtime(gw.url, { key: ROOT_KEY });
    await c.next('session.created');
    (await rt.session(1)).close(4002, 'upstream says bye');
    expect(await c.closed).toEqual({ code: 4002, reason: 'upstream says bye' });
    await sessionsOver();
  });

  it('turns a close without a code (1005) into 1000, both ways', async () => {
    const c1 = await openRealtime(gw.url, { key: ROOT_KEY });
    await c1.next('session.created');
    c1.socket.close();
    expect((await (await rt.session(1)).closed).code).toBe(1000);
    const c2 = await openRealtime(gw.url, { key: ROOT_KEY });
    await c2.next('session.created');
    (await rt.session(2)).socket.close();
    expect((await c2.closed).code).toBe(1000);
    await sessionsOver();
  });
});

describe('back-pressure', () => {
  it('stops reading upstream while the client does not read, and delivers everything in order after', async () => {
    const c = await openRealtime(gw.url, { key: ROOT_KEY });
    await c.next('session.created');
    c.socket.pause();
    const s = await rt.session(1);
    const frames = 200;
    const size = 256 * 1024;
    s.flood(frames, size);
    await waitFor(() => gw.app.realtime.stats().upstreamPauses > 0);
    // Wait until nothing moves any more: every buffer on the way is full.
    let last = -1;
    await waitFor(async () => {
      const now = s.socket.bufferedAmount;
      const still = now === last;
      last = now;
      await new Promise((r) => setTimeout(r, 50));
      return still;
    });
    const stats = gw.app.realtime.stats();
    expect(stats.queued).toBeLessThanOrEqual(HIGH_WATER_BYTES + 2 * size);
    // Most of the flood is still waiting in the mock: the gateway did not read it into memory.
    expect(s.socket.bufferedAmount).toBeGreaterThan((frames * size) / 2);
    c.socket.resume();
    await waitFor(() => c.count('response.output_audio.delta') === frames, 20_000);
    const seqs = c.events.filter((e) => e['type'] === 'response.output_audio.delta').map((e) => e['seq']);
    expect(seqs).toEqual(Array.from({ length: frames }, (_, i) => i));
    expect(gw.app.realtime.stats().maxQueued).toBeLessThanOrEqual(HIGH_WATER_BYTES + 2 * size);
    c.socket.close();
    await sessionsOver();
  });
});
