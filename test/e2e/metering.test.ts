// End-to-end: money. Exact charges, reservations under concurrency, disconnects, retries, gates.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { startGateway, call, type TestGateway } from '../support/gateway.js';
import { createChild, updateChild, loadedByName } from '../support/accounts.js';
import { liveBalance } from '../../src/accounts/cards.js';
import { countTextTokens } from '../../src/billing/token-count.js';

const K1 = 'sk-upstream-meter-aaaaaaaaaaaaaaaa0001';
const K2 = 'sk-upstream-meter-bbbbbbbbbbbbbbbb0002';
let mock: MockUpstream;
let gw: TestGateway;
const chat = (content = 'hello world, how are you today?') => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user' as const, content }],
});

beforeAll(async () => {
  mock = await startMockUpstream();
  gw = await startGateway({
    OPENAI_API_BASE: mock.url,
    INIT_KEYS: `${K1},${K2}`,
    DEFAULT_MODEL_PRICE: '200,200',
  });
});
afterAll(async () => {
  await gw.stop();
  await mock.close();
});
beforeEach(() => mock.reset());

function account(name: string) {
  const a = loadedByName(gw.app, name);
  if (a === undefined) throw new Error(`no account ${name}`);
  return a;
}

async function ledgerSum(id: number): Promise<number> {
  await gw.app.writer.flush();
  const rows = await gw.app.store.db
    .selectFrom('ledger')
    .select('amount')
    .where('account_id', '=', id)
    .execute();
  return rows.reduce((s, r) => s + Number(r.amount), 0);
}

/** gpt-4o-mini: $0.15 input, $0.60 output per 1M tokens → micros, rounded up once. */
function expectedMiniCost(prompt: number, completion: number, rates = 1): number {
  return Math.ceil(((prompt * 150_000 + completion * 600_000) * rates) / 1_000_000);
}

describe('charges', () => {
  it('charges exactly the upstream usage at the table price, and the ledger matches the balance', async () => {
    const key = await createChild(gw, 'payer', 10);
    const r = await gw.client(key).chat.completions.create(chat());
    const a = account('payer');
    expect(a.creditUsed).toBe(expectedMiniCost(r.usage!.prompt_tokens, r.usage!.completion_tokens));
    expect(liveBalance(a.cards, Date.now())).toBe(10_000_000 - a.creditUsed);
    expect(await ledgerSum(a.id)).toBe(10_000_000 - a.creditUsed);
  });

  it('multiplies the cost by the account Rates', async () => {
    const key = await createChild(gw, 'resold', 10, { Rates: 2.5 });
    const r = await gw.client(key).chat.completions.create(chat());
    expect(account('resold').creditUsed).toBe(
      expectedMiniCost(r.usage!.prompt_tokens, r.usage!.completion_tokens, 2.5),
    );
  });

  it('a retried request is charged once, with one usage record', async () => {
    const key = await createChild(gw, 'retried', 10);
    mock.setKey(K1, { kind: 'error500' });
    const before = account('retried').creditUsed;
    const results = await Promise.all([1, 2].map(() => gw.client(key).chat.completions.create(chat())));
    mock.setKey(K1, { kind: 'ok' });
    const a = account('retried');
    const expected = results.reduce(
      (s, r) => s + expectedMiniCost(r.usage!.prompt_tokens, r.usage!.completion_tokens),
      0,
    );
    expect(a.creditUsed - before).toBe(expected);
    await gw.app.writer.flush();
    const rows = await gw.app.store.db
      .selectFrom('usage_records')
      .selectAll()
      .where('account_id', '=', a.id)
      .execute();
    expect(rows).toHaveLength(2);
    expect(rows.some((r) => r.attempts === 2)).toBe(true);
    const ledger = await gw.app.store.db
      .selectFrom('ledger')
      .selectAll()
      .where('account_id', '=', a.id)
      .where('kind', '=', 'usage')
      .execute();
    expect(ledger).toHaveLength(2);
    expect(new Set(ledger.map((l) => l.request_id)).size).toBe(2);
  });

  it('a client that disconnects mid-stream pays for the prompt and the delivered tokens', async () => {
    const key = await createChild(gw, 'leaver', 10);
    const words = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ');
    mock.setStream({ chunks: 40, intervalMs: 40, content: words });
    const controller = new AbortController();
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...chat(), stream: true }),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    let received = '';
    while (received.split('"content":"word').length < 6)
      received += Buffer.from((await reader.read()).value!).toString();
    controller.abort();
    const a = account('leaver');
    await new Promise((r) => setTimeout(r, 300));
    await gw.app.writer.flush();
    const [row] = await gw.app.store.db
      .selectFrom('usage_records')
      .selectAll()
      .where('account_id', '=', a.id)
      .execute();
    expect(row?.outcome).toBe('client-gone');
    expect(row?.usage_source).toBe('tokenizer');
    expect(row?.prompt_tokens).toBeGreaterThan(0);
    const deliveredAtLeast = countTextTokens(
      'gpt-4o-mini',
      Array.from({ length: 5 }, (_, i) => `word${i}`).join(' '),
    );
    expect(row?.completion_tokens).toBeGreaterThanOrEqual(deliveredAtLeast);
    expect(row?.completion_tokens).toBeLessThan(countTextTokens('gpt-4o-mini', words));
    expect(row?.cost).toBe(expectedMiniCost(row!.prompt_tokens, row!.completion_tokens));
    expect(a.creditUsed).toBe(row?.cost);
    expect(a.reserved).toBe(0);
  });

  it('streams are billed from the usage chunk the gateway asked for', async () => {
    const key = await createChild(gw, 'streamer', 10);
    mock.setStream({ chunks: 5, content: 'one two three four five' });
    const s = await gw.client(key).chat.completions.create({ ...chat(), stream: true });
    for await (const c of s) expect(c.usage ?? null).toBeNull();
    await gw.app.writer.flush();
    const a = account('streamer');
    const [row] = await gw.app.store.db
      .selectFrom('usage_records')
      .selectAll()
      .where('account_id', '=', a.id)
      .execute();
    expect(row?.usage_source).toBe('upstream');
    expect(row?.completion_tokens).toBe(5);
    expect(a.creditUsed).toBe(row?.cost);
  });
});

describe('concurrency cannot overspend', () => {
  it('1,000 concurrent requests against a balance that affords 100: never below zero, exact to the micro', async () => {
    // DEFAULT_MODEL_PRICE prices "pricey-model" at $200/1M tokens. The reservation bounds the prompt by
    // the body's ~85 bytes, plus max_tokens 10: ~$0.019 each, so the $2 spendable above the $1 floor
    // affords about 100 at a time.
    const key = await createChild(gw, 'crowd', 3);
    mock.setDefault({ kind: 'slow', delayMs: 150 });
    const body = JSON.stringify({
      model: 'pricey-model',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'hi' }],
    });
    const statuses = await Promise.all(
      Array.from({ length: 1000 }, () =>
        fetch(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body,
        }).then(async (r) => {
          await r.arrayBuffer();
          return r.status;
        }),
      ),
    );
    mock.setDefault({ kind: 'ok' });
    const ok = statuses.filter((s) => s === 200).length;
    const refused = statuses.filter((s) => s === 402).length;
    expect(ok + refused).toBe(1000);
    expect(ok).toBeGreaterThanOrEqual(50);
    expect(refused).toBeGreaterThan(0);
    const a = account('crowd');
    const balance = liveBalance(a.cards, Date.now());
    expect(balance).toBeGreaterThanOrEqual(0);
    expect(a.reserved).toBe(0);
    expect(a.creditUsed + balance).toBe(3_000_000);
    expect(await ledgerSum(a.id)).toBe(balance);
    const rows = await gw.app.store.db
      .selectFrom('usage_records')
      .select((eb) => eb.fn.sum<number>('cost').as('cost'))
      .where('account_id', '=', a.id)
      .executeTakeFirst();
    expect(Number(rows?.cost)).toBe(a.creditUsed);
  });
});

describe('gates', () => {
  it('refuses an unknown model without DEFAULT_MODEL_PRICE (400), and prices it with one', async () => {
    const other = await startGateway({ OPENAI_API_BASE: mock.url, INIT_KEYS: K1 });
    try {
      const key = await createChild(other, 'nomodel', 5);
      const r = await call(other, '/v1/chat/completions', {
        key,
        body: { model: 'mystery-model', messages: [] },
      });
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error: { param: string } }).error.param).toBe('model');
    } finally {
      await other.stop();
    }
    const key = await createChild(gw, 'hasdefault', 5);
    expect(
      (
        await call(gw, '/v1/chat/completions', {
          key,
          body: { model: 'mystery-model', max_tokens: 10, messages: [] },
        })
      ).status,
    ).toBe(200);
  });

  it('a disabled account gets 401', async () => {
    const key = await createChild(gw, 'sleeper', 5);
    expect((await updateChild(gw, 'sleeper', { Status: false })).status).toBe(200);
    const r = await call(gw, '/v1/chat/completions', { key, body: chat() });
    expect(r.status).toBe(401);
  });

  it('an IP outside the allow-list gets 403; X-Forwarded-For counts only from trusted proxies', async () => {
    const key = await createChild(gw, 'fenced', 5);
    expect((await updateChild(gw, 'fenced', { AllowIPs: '203.0.113.0/24' })).status).toBe(200);
    const spoofed = await call(gw, '/v1/chat/completions', {
      key,
      body: chat(),
      headers: { 'x-forwarded-for': '203.0.113.9' },
    });
    expect(spoofed.status).toBe(403);
    expect(((await spoofed.json()) as { error: { code: string } }).error.code).toBe('ip_not_allowed');
    const trusted = await gw.restart({ TRUSTED_PROXIES: '127.0.0.1,::1' });
    gw = trusted;
    const r = await call(gw, '/v1/chat/completions', {
      key,
      body: chat(),
      headers: { 'x-forwarded-for': '203.0.113.9' },
    });
    expect(r.status).toBe(200);
    expect((await call(gw, '/v1/chat/completions', { key, body: chat() })).status).toBe(403);
  });

  it('a model outside the allow-list gets 403', async () => {
    const key = await createChild(gw, 'picky', 5);
    expect((await updateChild(gw, 'picky', { AllowModels: 'gpt-4o' })).status).toBe(200);
    expect(
      (await call(gw, '/v1/chat/completions', { key, body: { ...chat(), model: 'gpt-4o' } })).status,
    ).toBe(200);
    const r = await call(gw, '/v1/chat/completions', { key, body: chat() });
    expect(r.status).toBe(403);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('model_not_allowed');
  });

  it('a balance below $1 gets 402 "Insufficient balance"', async () => {
    const key = await createChild(gw, 'broke', 2);
    expect((await updateChild(gw, 'broke', { CreditGranted: -1.5 })).status).toBe(200);
    const r = await call(gw, '/v1/chat/completions', { key, body: chat() });
    expect(r.status).toBe(402);
    const body = (await r.json()) as { error: { message: string; code: string; type: string } };
    expect(body.error).toMatchObject({ message: 'Insufficient balance', code: 'insufficient_quota' });
    expect(mock.requests).toHaveLength(0);
  });

  it('the monthly HardLimit stops calls with 402', async () => {
    const key = await createChild(gw, 'capped', 50);
    expect((await updateChild(gw, 'capped', { HardLimit: 0.05, SoftLimit: 0.01 })).status).toBe(200);
    // Each answer has 100 completion tokens ($0.02); the worst case with max_tokens 150 is ~$0.049.
    mock.setStream({ content: Array.from({ length: 100 }, (_, i) => `w${i}`).join(' ') });
    const body = JSON.stringify({
      model: 'pricey-model',
      max_tokens: 150,
      messages: [{ role: 'user', content: 'hi' }],
    });
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}` },
        body,
      });
      statuses.push(r.status);
    }
    expect(statuses[0]).toBe(200);
    expect(statuses.slice(1).every((s) => s === 402)).toBe(true);
    expect(account('capped').month.cost).toBeGreaterThan(0);
    expect(account('capped').month.cost).toBeLessThanOrEqual(50_000);
  });

  it('RateLimit RPM gives 429 with Retry-After and x-ratelimit headers, exactly under concurrency', async () => {
    const key = await createChild(gw, 'hasty', 5);
    expect((await updateChild(gw, 'hasty', { RateLimit: 5 })).status).toBe(200);
    const responses = await Promise.all(
      Array.from({ length: 12 }, () => call(gw, '/v1/chat/completions', { key, body: chat() })),
    );
    expect(responses.filter((r) => r.status === 200)).toHaveLength(5);
    const limited = responses.filter((r) => r.status === 429);
    expect(limited).toHaveLength(7);
    expect(Number(limited[0]?.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(limited[0]?.headers.get('x-ratelimit-limit-requests')).toBe('5');
    expect(limited[0]?.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    expect(responses.find((r) => r.status === 200)?.headers.get('x-ratelimit-limit-requests')).toBe('5');
  });
});

describe('durability', () => {
  it('nothing settled is lost on SIGTERM-style stop', async () => {
    const key = await createChild(gw, 'durable', 10);
    await Promise.all([1, 2, 3, 4, 5].map(() => gw.client(key).chat.completions.create(chat())));
    const used = account('durable').creditUsed;
    gw = await gw.restart();
    // Not in memory after a restart: read from the store on first use.
    const a = (await gw.app.accounts.byName('durable'))!;
    expect(a.creditUsed).toBe(used);
    expect(a.requests).toBe(5);
    expect(liveBalance(a.cards, Date.now())).toBe(10_000_000 - used);
    const rows = await gw.app.store.db
      .selectFrom('usage_records')
      .selectAll()
      .where('account_id', '=', a.id)
      .execute();
    expect(rows).toHaveLength(5);
  });
});
