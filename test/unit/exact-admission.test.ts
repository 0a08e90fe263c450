// Admission refuses only what is really unaffordable: the cheap byte bound of a prompt admits on the
// hot path, and before a refusal for money the prompts are counted with the real tokenizer (this
// request's, and those of the account's admitted requests in flight). At the boundary: a balance,
// a HardLimit or a lease of exactly the exact worst case admits, a micro-dollar less refuses; the
// tokenizer never runs while the cheap bound fits; the exact bound stays above what upstream bills.
import fc from 'fast-check';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { Account } from '../../src/accounts/account.js';
import { liveBalance } from '../../src/accounts/cards.js';
import { newRootAccount } from '../../src/accounts/load-accounts.js';
import { RateLimiter } from '../../src/accounts/rate-limiter.js';
import { Calendar } from '../../src/billing/calendar.js';
import { worstCaseCost } from '../../src/billing/cost.js';
import { exactPromptBound, type PromptCounter } from '../../src/billing/exact-prompt.js';
import { Meter, type Admission, type Ticket } from '../../src/billing/meter.js';
import { RATE_ONE, type Micros } from '../../src/billing/money.js';
import { loadPriceTable, type ModelPrice } from '../../src/billing/price-table.js';
import type { Purse, Shortfall } from '../../src/billing/purse.js';
import { promptBound } from '../../src/billing/request-bounds.js';
import { countTextTokens, mediaInputTokens, warmTokenizers } from '../../src/billing/token-count.js';
import type { ParsedRequest } from '../../src/proxy/parse-request.js';
import { StateWriter } from '../../src/store/state-writer.js';
import { promptTokens, textChars } from '../support/mock-http.js';

const prices = loadPriceTable(new URL('../../config/prices.json', import.meta.url).pathname);
const log = pino({ level: 'silent' });
const CHAT = '/v1/chat/completions';

// Three-letter words are one token each with their space, so the mock upstream's 4 characters per
// token never bills more than the real tokenizer counts (see the property tests below).
const WORDS =
  'the cat dog sat ran on a mat and to sun sea far but not for big red hot day way see you can'.split(' ');

/** Deterministic plain English of `chars` characters. */
function english(chars: number, seed = 7): string {
  let s = seed;
  let text = '';
  for (let i = 1; text.length < chars; i++) {
    s = (s * 16807) % 2147483647;
    text += WORDS[s % WORDS.length] + (i % 9 === 0 ? '. ' : ' ');
  }
  return text.slice(0, chars);
}

function request(json: Record<string, unknown>): ParsedRequest {
  return {
    model: typeof json['model'] === 'string' ? json['model'] : undefined,
    stream: false,
    json,
    body: Buffer.from(JSON.stringify(json)),
    stripUsageChunk: false,
    multipart: false,
  };
}

const chat = (model: string, content: string, maxTokens: number): ParsedRequest =>
  request({ model, max_tokens: maxTokens, messages: [{ role: 'user', content }] });

function account(balance: Micros, hardLimit: Micros = 1_000_000_000_000): Account {
  const now = Date.now();
  return {
    ...newRootAccount(5, 'a@example.com', 'hash', 'partial', now, new Calendar('UTC').periodOf(now)),
    isRoot: false,
    name: 'small',
    rates: RATE_ONE,
    hardLimit,
    rateLimit: 1_000_000,
    cards: [{ amount: balance, balance, grantedAt: 0, expiresAt: now + 86_400_000 }],
  };
}

/** The exact counter of production, counting its calls. */
function spy(): { calls: number; count: PromptCounter } {
  const s = {
    calls: 0,
    count: ((path, req) => {
      s.calls++;
      return exactPromptBound(path, req);
    }) as PromptCounter,
  };
  return s;
}

function meter(exactPrompt: PromptCounter, purse?: Purse): Meter {
  const writer = new StateWriter({ write: () => Promise.resolve() }, log, {
    flushIntervalMs: 1000,
    statsInterval: 1000,
  });
  return new Meter(prices, new Calendar('UTC'), new RateLimiter(), writer, {
    maxOutputTokensCap: 4096,
    exactPrompt,
    ...(purse !== undefined && { purse }),
  });
}

let seq = 0;
const admit = (m: Meter, a: Account, req: ParsedRequest): Admission | Promise<Admission> =>
  m.admit(a, CHAT, req, '127.0.0.1', `req_${++seq}`);

function ticketOf(r: Admission | Promise<Admission>): Ticket {
  if (r instanceof Promise || !r.ok) throw new Error(`not admitted: ${JSON.stringify(r)}`);
  return r.ticket;
}

/** Worst cases of `req`: with the byte bound (what admission reserved before) and counted. */
function worstCases(req: ParsedRequest, maxOut: number): { cheap: Micros; exact: Micros; price: ModelPrice } {
  const price = prices.lookup(req.model ?? '') as ModelPrice;
  const bound = exactPromptBound(CHAT, req) as number;
  const cheapPrompt = promptBound(CHAT, req);
  return {
    price,
    cheap: worstCaseCost(price, cheapPrompt, maxOut, RATE_ONE),
    exact: worstCaseCost(price, Math.min(bound, cheapPrompt), maxOut, RATE_ONE),
  };
}

// o1-pro ($150 / $600 per 1M): 1,600 output tokens are $0.96, so the whole worst case is above the
// $1 floor and the boundary is the worst case against the balance, not the floor.
const big = chat('o1-pro', english(2_000), 1_600);
const bigCase = worstCases(big, 1_600);

describe('admission at the boundary', () => {
  it('the byte bound would refuse these (the point of the exact count)', () => {
    expect(bigCase.cheap).toBeGreaterThan(bigCase.exact * 1.15);
    expect(bigCase.exact).toBeGreaterThan(1_000_000);
  });

  it('admits a balance of exactly the exact worst case, and reserves that', () => {
    const s = spy();
    const a = account(bigCase.exact);
    const ticket = ticketOf(admit(meter(s.count), a, big));
    expect(ticket.reserved).toBe(bigCase.exact);
    expect(a.reserved).toBe(bigCase.exact);
    expect(s.calls).toBe(1);
  });

  it('refuses one micro-dollar less with insufficient_balance', () => {
    const r = admit(meter(spy().count), account(bigCase.exact - 1), big);
    expect(r).toMatchObject({ ok: false, error: { status: 402, errorName: 'insufficient_balance' } });
  });

  it('a HardLimit of exactly the exact worst case admits; one micro-dollar less refuses', () => {
    const a = account(100_000_000, bigCase.exact);
    expect(ticketOf(admit(meter(spy().count), a, big)).reserved).toBe(bigCase.exact);
    const r = admit(meter(spy().count), account(100_000_000, bigCase.exact - 1), big);
    expect(r).toMatchObject({ ok: false, error: { errorName: 'hard_limit_reached' } });
  });

  it('settles the exactly admitted request without going below zero', () => {
    const m = meter(spy().count);
    const a = account(bigCase.exact);
    const ticket = ticketOf(admit(m, a, big));
    // The worst upstream can bill: the whole bound as prompt and every output token.
    const usage = {
      promptTokens: exactPromptBound(CHAT, big) as number,
      cachedTokens: 0,
      completionTokens: 1_600,
    };
    const cost = m.settle(ticket, {
      kind: 'relayed',
      status: 200,
      end: 'completed',
      usage,
      deliveredText: '',
      attempts: 1,
    });
    expect(cost).toBe(bigCase.exact);
    expect(liveBalance(a.cards, Date.now())).toBe(0);
    expect(a.reserved).toBe(0);
  });
});

describe('the tokenizer runs only when a refusal is near', () => {
  it('never when the cheap bound fits', () => {
    const s = spy();
    const m = meter(s.count);
    const a = account(100_000_000);
    for (let i = 0; i < 20; i++) ticketOf(admit(m, a, big));
    expect(s.calls).toBe(0);
  });

  it('not for a balance below $1, nor when the output alone does not fit', () => {
    const s = spy();
    expect(admit(meter(s.count), account(999_999), chat('gpt-4o', english(500), 10))).toMatchObject({
      ok: false,
      error: { errorName: 'insufficient_balance' },
    });
    // 1,600 output tokens of o1-pro are $0.96: $1.50 covers them but not 10,000 of them.
    expect(admit(meter(s.count), account(1_500_000), chat('o1-pro', english(500), 10_000))).toMatchObject({
      ok: false,
      error: { errorName: 'insufficient_balance' },
    });
    expect(s.calls).toBe(0);
  });

  it('not for a model priced by the default price (its encoding is unknown)', () => {
    const withDefault = loadPriceTable(new URL('../../config/prices.json', import.meta.url).pathname, {
      defaultPrice: { inputMicrosPerM: 150_000_000, outputMicrosPerM: 600_000_000 },
    });
    const s = spy();
    const writer = new StateWriter({ write: () => Promise.resolve() }, log, {
      flushIntervalMs: 1000,
      statsInterval: 1000,
    });
    const m = new Meter(withDefault, new Calendar('UTC'), new RateLimiter(), writer, {
      maxOutputTokensCap: 4096,
      exactPrompt: s.count,
    });
    const r = admit(m, account(bigCase.exact), chat('mystery-model', english(2_000), 1_600));
    expect(r).toMatchObject({ ok: false, error: { errorName: 'insufficient_balance' } });
    expect(s.calls).toBe(0);
  });
});

describe('non-text parts keep the cheap bound', () => {
  it('an image part counts its bytes and the per-image estimate; the text beside it is counted', () => {
    const text = english(3_000);
    const textOnly = request({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: [{ type: 'text', text }] }],
    });
    const messages = [
      {
        role: 'user',
        content: [
          { type: 'text', text },
          { type: 'image_url', image_url: { url: 'https://example.com/cat.png', detail: 'high' } },
        ],
      },
    ];
    const withImage = request({ model: 'gpt-4o', messages });
    const image = mediaInputTokens('gpt-4o', messages);
    expect(image).toBe(85 + 4 * 170);
    const extraBytes = (withImage.body?.length ?? 0) - (textOnly.body?.length ?? 0);
    expect(exactPromptBound(CHAT, withImage)).toBe(
      (exactPromptBound(CHAT, textOnly) as number) + extraBytes + image,
    );
    // Still below the byte bound: the text is counted.
    expect(exactPromptBound(CHAT, withImage)).toBeLessThan(promptBound(CHAT, withImage));
  });

  it('the cheap bound of a body with media is its bytes plus the media estimate, with no tokenizer', () => {
    // Text BPE is quadratic on (16 Ki of one letter): beside an image it still costs only its bytes.
    for (const text of ['a'.repeat(16_000), english(3_000)]) {
      const messages = [
        {
          role: 'user',
          content: [
            { type: 'text', text },
            { type: 'image_url', image_url: { url: 'https://example.com/cat.png', detail: 'high' } },
          ],
        },
      ];
      const req = request({ model: 'gpt-4o', messages });
      expect(promptBound(CHAT, req)).toBe((req.body?.length ?? 0) + 85 + 4 * 170);
    }
  });

  it('other endpoints and bodies above the size cap are not counted (the cheap bound stands)', () => {
    const json = { model: 'gpt-4o', input: english(1_000) };
    expect(exactPromptBound('/v1/responses', request(json))).toBeUndefined();
    expect(exactPromptBound(CHAT, chat('gpt-4o', english(2_000), 1), 1_000)).toBeUndefined();
    expect(exactPromptBound(CHAT, chat('gpt-4o', english(500), 1), 1_000)).toBeGreaterThan(0);
  });

  it('texts BPE is slow on (long runs without a space) and text past the budget keep their bytes', () => {
    // 16 Ki of one letter took ~170 ms to tokenize: such a text is not counted, it keeps its bytes.
    for (const slow of ['a'.repeat(16_000), '!@#$%^&*'.repeat(2_000), '漢'.repeat(5_000)]) {
      const req = chat('gpt-4o', slow, 1);
      expect(exactPromptBound(CHAT, req)).toBe(req.body!.length);
    }
    // Runs of 64 are counted; the second text of 24 Ki is past the budget and keeps its bytes.
    const short = `${'a'.repeat(63)} `.repeat(100);
    expect(exactPromptBound(CHAT, chat('gpt-4o', short, 1))).toBeLessThan(
      chat('gpt-4o', short, 1).body!.length,
    );
    const big = english(24_000);
    const two = request({
      model: 'gpt-4o',
      messages: [
        { role: 'user', content: big },
        { role: 'user', content: big },
      ],
    });
    const one = exactPromptBound(CHAT, chat('gpt-4o', big, 1))!;
    expect(exactPromptBound(CHAT, two)).toBeGreaterThan(one + Buffer.byteLength(big) - 10);
  });
});

describe('many requests in flight on a small balance', () => {
  // gpt-4o ($2.50 / $10 per 1M), 16.5k characters of English (~4.5k tokens), max_tokens 16.
  const req = chat('gpt-4o', english(16_500), 16);
  const { cheap, exact } = worstCases(req, 16);

  /** Admits `n` requests without settling any, like a burst whose answers have not come back. */
  function burst(count: PromptCounter, n: number): { a: Account; m: Meter; tickets: Ticket[] } {
    const m = meter(count);
    const a = account(2_000_000);
    const tickets: Ticket[] = [];
    for (let i = 0; i < n; i++) {
      const r = admit(m, a, req);
      if (!(r instanceof Promise) && r.ok) tickets.push(r.ticket);
      expect(liveBalance(a.cards, Date.now()) - a.reserved).toBeGreaterThanOrEqual(0);
    }
    return { a, m, tickets };
  }

  it('admits what $2 really affords, not what the byte bound allowed', () => {
    // Above the $1 floor, $1 of reservations fits, and one more request while $1 is left.
    const affordable = Math.floor(1_000_000 / exact) + 1;
    const byteBound = Math.floor(1_000_000 / cheap) + 1;
    const before = burst(() => undefined, 600);
    expect(before.tickets.length).toBe(byteBound);
    const s = spy();
    const after = burst(s.count, 600);
    expect(after.tickets.length).toBe(affordable);
    expect(affordable).toBeGreaterThan(3 * byteBound);
    // Each admitted prompt counted once (in flight or at its own admission); the refusals past the
    // $1 floor count nothing.
    expect(s.calls).toBeLessThanOrEqual(after.tickets.length + 1);
    // Every reservation is now the exact worst case, and they add up to what the account holds.
    expect(new Set(after.tickets.map((t) => t.reserved))).toEqual(new Set([exact]));
    expect(after.a.reserved).toBe(affordable * exact);
  });

  it('one admission counts at most five prompts: two in flight per pass, and its own', () => {
    const s = spy();
    const m = meter(s.count);
    const a = account(2_000_000);
    let most = 0;
    for (let i = 0; i < 600; i++) {
      const before = s.calls;
      expect(admit(m, a, req)).not.toBeInstanceOf(Promise);
      most = Math.max(most, s.calls - before);
    }
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(5);
  });

  it('a reservation let go elsewhere (a follow another instance took) is not lowered again', () => {
    const s = spy();
    const m = meter(s.count);
    const a = account(2_000_000);
    const tickets: Ticket[] = [];
    for (let i = 0; i < 25; i++) tickets.push(ticketOf(admit(m, a, req)));
    // What the follower's drop does: the reservation is let go, with no charge and no record.
    const dropped = tickets[0] as Ticket;
    m.letGo(dropped);
    expect(dropped.settled).toBe(true);
    m.letGo(dropped);
    expect(a.reserved).toBe(24 * cheap);
    tickets.push(ticketOf(admit(m, a, req)));
    expect(tickets[tickets.length - 1]!.reserved).toBe(cheap);
    expect(s.calls).toBe(0);
    // Each refusal lowers a few in flight; within a few, one fits at its exact worst case.
    let last: Ticket | undefined;
    for (let i = 0; i < 20 && last === undefined; i++) {
      const r = admit(m, a, req);
      if (!(r instanceof Promise) && r.ok) last = r.ticket;
    }
    if (last === undefined) throw new Error('never admitted');
    expect(last.reserved).toBe(exact);
    expect(dropped.reserved).toBe(cheap);
    // Some in flight were lowered to their exact worst case (never the dropped one), and the
    // account holds exactly what its tickets in flight reserve.
    const inFlight = tickets.filter((t) => t !== dropped);
    expect(inFlight.filter((t) => t.reserved === exact).length).toBeGreaterThan(0);
    expect(a.reserved).toBe(inFlight.reduce((sum, t) => sum + t.reserved, 0) + last.reserved);
  });

  it('a request that ended is out of the list: a later refusal counts only what is in flight', () => {
    const s = spy();
    const m = meter(s.count);
    const a = account(2_000_000);
    const tickets: Ticket[] = [];
    for (let i = 0; i < 25; i++) tickets.push(ticketOf(admit(m, a, req)));
    expect(s.calls).toBe(0);
    // All but the newest end without usage (the client left): nothing charged for the prompt.
    for (const t of tickets.slice(0, -1)) {
      m.settle(t, { kind: 'failed', status: 499, outcome: 'client-gone', attempts: 1 });
    }
    expect(a.reserved).toBe(cheap);
    // Fill the balance with requests in flight again until one is refused for money: the counts
    // go to those in flight and to the new ones, never to the 24 that ended.
    const before = s.calls;
    const more: Ticket[] = [];
    for (let i = 0; i < 600; i++) {
      const r = admit(m, a, req);
      if (r instanceof Promise || !r.ok) break;
      more.push(r.ticket);
    }
    const inFlight = [tickets[tickets.length - 1]!, ...more];
    expect(s.calls - before).toBeLessThanOrEqual(inFlight.length + 1);
    expect(a.reserved).toBe(inFlight.reduce((sum, t) => sum + t.reserved, 0));
    for (const t of tickets.slice(0, -1)) expect(t.loose).toBeUndefined();
  });

  it('settling them all charges each its usage, never below zero, and frees every reservation', () => {
    const { a, m, tickets } = burst(spy().count, 600);
    const usage = {
      promptTokens: exactPromptBound(CHAT, req) as number,
      cachedTokens: 0,
      completionTokens: 16,
    };
    let charged = 0;
    for (const t of tickets) {
      charged += m.settle(t, {
        kind: 'relayed',
        status: 200,
        end: 'completed',
        usage,
        deliveredText: '',
        attempts: 1,
      });
    }
    expect(charged).toBe(tickets.length * exact);
    expect(a.reserved).toBe(0);
    expect(liveBalance(a.cards, Date.now())).toBe(2_000_000 - charged);
    expect(liveBalance(a.cards, Date.now())).toBeGreaterThanOrEqual(0);
  });
});

describe('several instances (a purse that tops up)', () => {
  /** A lease-like purse: `held` is spendable here; a top-up takes what `pool` has, after a tick. */
  class LeasePurse implements Purse {
    readonly canTopUp = true;
    held = 0;
    spent = 0;
    constructor(public pool: number) {}
    available(a: Account): number {
      return this.held - this.spent - a.reserved;
    }
    take(_a: Account, cost: number): number {
      const taken = Math.min(cost, this.held - this.spent);
      this.spent += taken;
      return taken;
    }
    async topUp(a: Account, want: number): Promise<Shortfall | undefined> {
      await new Promise((r) => setTimeout(r, 1));
      const grant = Math.min(Math.max(0, want - this.available(a)), this.pool);
      this.pool -= grant;
      this.held += grant;
      return this.available(a) >= want ? undefined : 'balance';
    }
  }

  it('after a top-up that cannot bring the byte bound, admits with the exact worst case', async () => {
    const s = spy();
    const a = account(0);
    const r = await admit(meter(s.count, new LeasePurse(bigCase.exact)), a, big);
    expect(ticketOf(r).reserved).toBe(bigCase.exact);
    expect(s.calls).toBe(1);
    const refused = await admit(meter(spy().count, new LeasePurse(bigCase.exact - 1)), account(0), big);
    expect(refused).toMatchObject({ ok: false, error: { errorName: 'insufficient_balance' } });
  });

  it('a lease the byte bound fits never runs the tokenizer', async () => {
    const s = spy();
    expect(ticketOf(await admit(meter(s.count, new LeasePurse(100_000_000)), account(0), big)).reserved).toBe(
      bigCase.cheap,
    );
    expect(s.calls).toBe(0);
  });
});

describe('the exact bound stays above what upstream bills', () => {
  warmTokenizers();
  const ascii = fc.array(fc.constantFrom(...WORDS), { minLength: 1, maxLength: 200 }).map((w) => w.join(' '));
  const cjk = fc
    .array(fc.integer({ min: 0x4e00, max: 0x9fff }), { minLength: 1, maxLength: 400 })
    .map((cs) => String.fromCodePoint(...cs));
  const emoji = fc
    .array(fc.constantFrom('😀', '🎉', '👍🏽', '🇫🇷', '❤️', '👨‍👩‍👧', ' ', 'ok'), { minLength: 1, maxLength: 200 })
    .map((e) => e.join(''));
  const anyText = fc.string({ unit: 'binary', maxLength: 300 });
  const text = fc.oneof(ascii, cjk, emoji, anyText);
  const content = fc.oneof(
    text,
    fc.array(
      text.map((t) => ({ type: 'text', text: t })),
      { minLength: 1, maxLength: 3 },
    ),
  );
  const message = fc.record({
    role: fc.constantFrom('system', 'developer', 'user', 'assistant'),
    content,
  });
  const body = fc.record({
    model: fc.constantFrom('gpt-4o', 'gpt-4o-mini', 'gpt-4.1', 'gpt-4', 'gpt-3.5-turbo', 'o3'),
    messages: fc.array(message, { minLength: 1, maxLength: 5 }),
  });

  const pieces = (c: string | { text: string }[]): string[] =>
    typeof c === 'string' ? [c] : c.map((p) => p.text);

  it('≥ the mock upstream’s prompt_tokens for English of short words, CJK, emoji and any text', () => {
    fc.assert(
      fc.property(body, (json) => {
        const bound = exactPromptBound(CHAT, request(json)) as number;
        expect(bound).toBeGreaterThanOrEqual(promptTokens(textChars(json.messages)));
      }),
      { numRuns: 300 },
    );
  });

  it('≥ what OpenAI bills: per message 3 + role + text tokens, +3 priming (the cookbook count)', () => {
    fc.assert(
      fc.property(body, fc.constantFrom('', '\n', ' '), (json, joiner) => {
        const bound = exactPromptBound(CHAT, request(json)) as number;
        let billed = 3;
        for (const m of json.messages) {
          billed +=
            3 +
            countTextTokens(json.model, m.role) +
            countTextTokens(json.model, pieces(m.content).join(joiner));
        }
        expect(bound).toBeGreaterThanOrEqual(billed);
      }),
      { numRuns: 300 },
    );
  });
});
