// The money side of a realtime session, against the real Meter: what each response reserves, how
// each is settled, and that every ticket is settled exactly once on every path.
import pino from 'pino';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { Account } from '../../src/accounts/account.js';
import { liveBalance } from '../../src/accounts/cards.js';
import { newRootAccount } from '../../src/accounts/load-accounts.js';
import { RateLimiter } from '../../src/accounts/rate-limiter.js';
import { Calendar } from '../../src/billing/calendar.js';
import { computeCost, worstCaseCost } from '../../src/billing/cost.js';
import { Meter, type Ticket } from '../../src/billing/meter.js';
import { RATE_ONE } from '../../src/billing/money.js';
import { loadPriceTable, type ModelPrice } from '../../src/billing/price-table.js';
import { countTextTokens } from '../../src/billing/token-count.js';
import { SessionMeter } from '../../src/realtime/session-meter.js';
import { StateWriter } from '../../src/store/state-writer.js';

const CAP = 16_384;
const prices = loadPriceTable(new URL('../../config/prices.json', import.meta.url).pathname);
const price = prices.lookup('gpt-realtime') as ModelPrice;
const log = pino({ level: 'silent' });

let meter: Meter;
let account: Account;
let session: SessionMeter;
let settled: Ticket[];
let usable: boolean;

function newAccount(balance: number): Account {
  const now = Date.now();
  return {
    ...newRootAccount(7, 'a@example.com', 'hash', 'partial', now, new Calendar('UTC').periodOf(now)),
    isRoot: false,
    name: 'a',
    rates: RATE_ONE,
    hardLimit: 1_000_000_000,
    cards: [{ amount: balance, balance, grantedAt: 0, expiresAt: now + 86_400_000 }],
  };
}

beforeEach(() => {
  const writer = new StateWriter({ write: () => Promise.resolve() }, log, {
    flushIntervalMs: 1000,
    statsInterval: 1000,
  });
  meter = new Meter(prices, new Calendar('UTC'), new RateLimiter(), writer, { maxOutputTokensCap: CAP });
  account = newAccount(20_000_000);
  usable = true;
  settled = [];
  const real = meter.settle.bind(meter);
  vi.spyOn(meter, 'settle').mockImplementation((ticket, end) => {
    settled.push(ticket);
    return real(ticket, end);
  });
  const ticket = meter.hold(account, {
    requestId: 'req_s',
    path: '/v1/realtime',
    model: 'gpt-realtime',
    price,
    reserve: 0,
  });
  let events = 0;
  session = new SessionMeter({
    meter,
    prices,
    account,
    ticket,
    price,
    attempts: 1,
    maxOutputTokensCap: CAP,
    accountUsable: () => usable,
    nextEventId: () => `evt_gw_${++events}`,
    log,
    onSettled: () => undefined,
  });
});

const frame = (event: unknown): Buffer => Buffer.from(JSON.stringify(event));
const upstream = (event: { type: string } & Record<string, unknown>) =>
  session.upstream(event.type, frame(event));
const client = (event: { type: string } & Record<string, unknown>) =>
  session.client(event.type, frame(event));

const sessionCreated = {
  type: 'session.created',
  session: {
    model: 'gpt-realtime',
    max_output_tokens: 'inf',
    audio: { input: { format: { type: 'audio/pcm', rate: 24000 } } },
  },
};
const usage = { input_tokens: 900, output_tokens: 60, input_token_details: { cached_tokens: 100 } };

function expectEverySettledOnce(): void {
  expect(new Set(settled).size).toBe(settled.length);
  expect(settled.every((t) => t.settled)).toBe(true);
}

describe('reservations', () => {
  it('reserves the conversation, the event itself and the output cap at the dearest token kind', () => {
    upstream(sessionCreated);
    const item = {
      type: 'conversation.item.create',
      item: { type: 'message', content: [{ type: 'input_text', text: 'hi' }] },
    };
    client(item);
    const create = { type: 'response.create', event_id: 'c1' };
    expect(client(create)).toEqual({ kind: 'forward' });
    const input = frame(sessionCreated).length + frame(item).length + frame(create).length;
    expect(account.reserved).toBe(worstCaseCost(price, input, CAP, RATE_ONE));
  });

  it('uses the response limit, and adds an event id when the client gave none', () => {
    upstream(sessionCreated);
    const verdict = client({ type: 'response.create', response: { max_output_tokens: 100 } });
    expect(verdict.kind).toBe('forward');
    const sent = JSON.parse((verdict as { frame: string }).frame) as Record<string, unknown>;
    expect(sent['event_id']).toBe('evt_gw_1');
    const input =
      frame(sessionCreated).length +
      frame({ type: 'response.create', response: { max_output_tokens: 100 } }).length;
    expect(account.reserved).toBe(worstCaseCost(price, input, 100, RATE_ONE));
  });

  it('counts appended audio by its duration in the session format', () => {
    upstream(sessionCreated);
    const append = frame({ type: 'input_audio_buffer.append', audio: 'A'.repeat(64_000) });
    session.client('input_audio_buffer.append', append);
    client({ type: 'response.create', event_id: 'c1', response: { max_output_tokens: 1 } });
    const own = frame({ type: 'response.create', event_id: 'c1', response: { max_output_tokens: 1 } }).length;
    const audio = Math.ceil(((append.length * 3) / 4 / 48_000) * 20);
    expect(account.reserved).toBe(
      worstCaseCost(price, frame(sessionCreated).length + audio + own, 1, RATE_ONE),
    );
  });

  it('refuses a response that does not fit, reserving nothing', () => {
    account.cards = newAccount(1_500_000).cards;
    upstream(sessionCreated);
    // 16,384 output tokens at $64 per 1M is more than $1.05: fits $1.50 once, not twice.
    expect(client({ type: 'response.create', event_id: 'c1' }).kind).toBe('forward');
    const second = client({ type: 'response.create', event_id: 'c2' });
    expect(second).toMatchObject({ kind: 'refuse', eventId: 'c2', error: { code: 'insufficient_quota' } });
    expect(account.reserved).toBe(
      worstCaseCost(
        price,
        frame(sessionCreated).length + frame({ type: 'response.create', event_id: 'c1' }).length,
        CAP,
        RATE_ONE,
      ),
    );
  });

  it('refuses responses of an account that was disabled', () => {
    usable = false;
    expect(client({ type: 'response.create' })).toMatchObject({
      kind: 'refuse',
      error: { code: 'account_deactivated' },
    });
    expect(upstream({ type: 'response.created', response: { id: 'r1' } })).toMatchObject({
      kind: 'refuse',
      responseId: 'r1',
    });
  });
});

describe('settlement', () => {
  it('settles each response.done exactly at the usage and releases its reservation', () => {
    upstream(sessionCreated);
    client({ type: 'response.create', event_id: 'c1' });
    upstream({ type: 'response.created', response: { id: 'r1' } });
    upstream({ type: 'response.done', response: { id: 'r1', status: 'completed', usage } });
    // A repeated response.done is not billed twice.
    upstream({ type: 'response.done', response: { id: 'r1', status: 'completed', usage } });
    const cost = computeCost(price, { promptTokens: 900, cachedTokens: 100, completionTokens: 60 }, RATE_ONE);
    expect(account.reserved).toBe(0);
    expect(account.creditUsed).toBe(cost);
    expect(liveBalance(account.cards, Date.now())).toBe(20_000_000 - cost);
    expect(session.inFlight).toBe(0);
    expectEverySettledOnce();
  });

  it('reserves a response upstream starts by itself, and cancels it when it cannot', () => {
    upstream(sessionCreated);
    expect(upstream({ type: 'response.created', response: { id: 'vad1' } })).toEqual({ kind: 'relay' });
    expect(account.reserved).toBeGreaterThan(0);
    account.cards = newAccount(500_000).cards;
    expect(upstream({ type: 'response.created', response: { id: 'vad2' } })).toMatchObject({
      kind: 'refuse',
      responseId: 'vad2',
    });
    upstream({ type: 'response.done', response: { id: 'vad2', status: 'cancelled', usage } });
    upstream({ type: 'response.done', response: { id: 'vad1', status: 'completed', usage } });
    expect(account.reserved).toBe(0);
    expect(settled).toHaveLength(2);
    expectEverySettledOnce();
  });

  it('releases the reservation of a response.create upstream refused', () => {
    client({ type: 'response.create', event_id: 'c1' });
    expect(account.reserved).toBeGreaterThan(0);
    upstream({ type: 'error', error: { code: 'conversation_already_has_active_response', event_id: 'c1' } });
    expect(account.reserved).toBe(0);
    expect(account.creditUsed).toBe(0);
    expectEverySettledOnce();
  });

  it('bills what was delivered when the session ends with responses in flight', () => {
    upstream(sessionCreated);
    client({ type: 'response.create', event_id: 'c1' });
    upstream({ type: 'response.created', response: { id: 'r1' } });
    upstream({ type: 'response.output_text.delta', response_id: 'r1', delta: 'Hello ' });
    upstream({ type: 'response.output_audio_transcript.delta', response_id: 'r1', delta: 'world' });
    client({ type: 'response.create', event_id: 'c2' });
    session.settleRemaining('client-gone');
    session.settleSession();
    // Whatever comes after the end changes nothing: no second bill, no new reservation.
    upstream({ type: 'response.done', response: { id: 'r1', status: 'cancelled', usage } });
    upstream({ type: 'response.created', response: { id: 'r2' } });
    expect(account.reserved).toBe(0);
    expect(account.creditUsed).toBe(countTextTokens('gpt-realtime', 'Hello world') * 16);
    // The session ticket, the running response and the one that never started.
    expect(settled).toHaveLength(3);
    expectEverySettledOnce();
  });

  it('bills transcription at the transcription model, and refuses an unpriced one', () => {
    expect(
      client({
        type: 'session.update',
        event_id: 'u1',
        session: { audio: { input: { transcription: { model: 'nope-transcribe' } } } },
      }),
    ).toMatchObject({ kind: 'reject', eventId: 'u1', error: { code: 'model_not_priced' } });
    client({
      type: 'session.update',
      session: { audio: { input: { transcription: { model: 'gpt-4o-mini-transcribe' } } } },
    });
    upstream({
      type: 'conversation.item.input_audio_transcription.completed',
      usage: { type: 'duration', seconds: 60 },
    });
    // gpt-4o-mini-transcribe: $0.003 per minute.
    expect(account.creditUsed).toBe(3_000);
    expectEverySettledOnce();
  });

  it('reserves for the higher output limit while a session.update is unconfirmed', () => {
    upstream({ type: 'session.created', session: { max_output_tokens: 10 } });
    client({ type: 'session.update', event_id: 'u1', session: { max_output_tokens: 'inf' } });
    const before = account.reserved;
    client({ type: 'response.create', event_id: 'c1' });
    const reserved = account.reserved - before;
    expect(reserved).toBeGreaterThan(worstCaseCost(price, 0, CAP - 1, RATE_ONE));
  });
});
