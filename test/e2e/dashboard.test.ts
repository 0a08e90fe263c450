/**
 * End-to-end tests of the /dashboard read models (spec §3.8, §3.9 and the OpenAI legacy billing
 * endpoints): the real gateway against the mock upstream, a sub-account funded by root, chat
 * completions through the official SDK, then the caller's own info, usage, subscription and
 * credit grants — fresh to the request, with and without the /v1 prefix.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { microsToUsd, RATE_ONE, usageCost } from '../../src/billing/money.js';
import { call, removeDir, ROOT_KEY, startGateway, type TestGateway } from '../support/gateway.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';

const UPSTREAM_KEY = 'sk-upstream-test-key-000000000001';
const DAY_MS = 86_400_000;
/** gpt-4o-mini in config/prices.json: $0.15 / $0.60 per 1M tokens = micros per 1M tokens. */
const MINI_INPUT = 150_000;
const MINI_OUTPUT = 600_000;

const INFO_KEYS = [
  'alias',
  'balance',
  'child',
  'create_at',
  'credit_balance',
  'credit_used',
  'daily_usage',
  'email',
  'hard_limit',
  'id',
  'level',
  'monthly_usage',
  'name',
  'rate_limit',
  'rates',
  'soft_limit',
  'status',
  'unlimited',
].sort();
const SUBSCRIPTION_KEYS = [
  'access_until',
  'account_name',
  'billing_address',
  'billing_email',
  'business_address',
  'canceled',
  'canceled_at',
  'delinquent',
  'has_payment_method',
  'hard_limit',
  'hard_limit_usd',
  'object',
  'plan',
  'po_number',
  'soft_limit',
  'soft_limit_usd',
  'system_hard_limit',
  'system_hard_limit_usd',
  'tax_ids',
].sort();

type Json = Record<string, unknown>;

function sortedKeys(value: unknown): string[] {
  return Object.keys(value as Json).sort();
}

async function json(res: Response): Promise<Json> {
  return (await res.json()) as Json;
}

function ymd(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Creates a funded child of root through POST /x-users; returns its key and id. */
async function createChild(
  gw: TestGateway,
  name: string,
  email: string,
  credit: number,
): Promise<{ key: string; id: number }> {
  const res = await call(gw, '/x-users', { body: { Name: name, Email: email, CreditGranted: credit } });
  const body = await json(res);
  expect(res.status, JSON.stringify(body)).toBe(200);
  const user = body['User'] as Json;
  return { key: user['SecretKey'] as string, id: user['ID'] as number };
}

/** One chat completion through the SDK; returns its exact cost in micros. */
async function chat(gw: TestGateway, key: string, text: string): Promise<number> {
  const completion = await gw.client(key).chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: text }],
  });
  const usage = completion.usage;
  if (usage === undefined) throw new Error('the mock returned no usage');
  return usageCost(
    [
      { units: usage.prompt_tokens, microsPerMillion: MINI_INPUT },
      { units: usage.completion_tokens, microsPerMillion: MINI_OUTPUT },
    ],
    RATE_ONE,
  );
}

describe('dashboard read models', () => {
  let mock: MockUpstream;
  let gw: TestGateway;
  let alice: { key: string; id: number };
  /** Micros charged to alice so far, from the usage the SDK saw. */
  let spent = 0;
  let requests = 0;

  beforeAll(async () => {
    mock = await startMockUpstream();
    // A long flush interval: freshness must come from the handlers, not from the background timer.
    gw = await startGateway({
      OPENAI_API_BASE: mock.url,
      INIT_KEYS: UPSTREAM_KEY,
      FLUSH_INTERVAL_MS: '60000',
    });
    alice = await createChild(gw, 'alice', 'alice@example.com', 50);
  });

  afterAll(async () => {
    await gw.stop();
    removeDir(gw.dataDir);
    await mock.close();
  });

  it('x_user/info of a new sub-account: its card, no usage, default limits', async () => {
    const res = await call(gw, '/dashboard/x_user/info', { key: alice.key });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const info = await json(res);
    expect(sortedKeys(info)).toEqual(INFO_KEYS);
    expect(info).toMatchObject({
      id: alice.id,
      level: 0,
      child: 0,
      name: 'alice',
      alias: 'alice',
      email: 'alice@example.com',
      credit_used: 0,
      balance: 50,
      unlimited: false,
      daily_usage: { CreditUsed: 0, Requests: 0 },
      monthly_usage: { CreditUsed: 0, Requests: 0 },
      hard_limit: 100,
      soft_limit: 80,
      rates: 1,
      status: true,
    });
    expect(Number.isNaN(Date.parse(info['create_at'] as string))).toBe(false);
    const cards = info['credit_balance'] as Json[];
    expect(cards).toHaveLength(1);
    const card = cards[0] as Json;
    expect(sortedKeys(card)).toEqual(['amount', 'balance', 'expires_at', 'granted_at']);
    expect(card).toMatchObject({ amount: 50, balance: 50 });
    const validity = Date.parse(card['expires_at'] as string) - Date.parse(card['granted_at'] as string);
    expect(validity).toBe(365 * DAY_MS);
  });

  it('x_user/info of root: unlimited, with numbers the original balance page can format', async () => {
    for (const prefix of ['', '/v1']) {
      const res = await call(gw, `${prefix}/dashboard/x_user/info`);
      expect(res.status).toBe(200);
      const info = await json(res);
      expect(sortedKeys(info)).toEqual(INFO_KEYS);
      expect(info).toMatchObject({
        name: 'root',
        email: 'root@example.com',
        balance: 1e9,
        unlimited: true,
        hard_limit: 1e9,
        soft_limit: 1e9,
        child: 1,
        credit_balance: [],
      });
    }
  });

  it('x_user/info counts every chat completion at once (today, month, lifetime, balance)', async () => {
    for (const text of ['Hello there', 'How are you today, gateway?', 'Tell me a long story '.repeat(20)]) {
      spent += await chat(gw, alice.key, text);
      requests++;
    }
    expect(spent).toBeGreaterThan(0);
    for (const prefix of ['', '/v1']) {
      const info = await json(await call(gw, `${prefix}/dashboard/x_user/info`, { key: alice.key }));
      expect(info['credit_used']).toBe(microsToUsd(spent));
      expect(info['balance']).toBe(microsToUsd(50_000_000 - spent));
      expect(info['daily_usage']).toEqual({ CreditUsed: microsToUsd(spent), Requests: requests });
      expect(info['monthly_usage']).toEqual({ CreditUsed: microsToUsd(spent), Requests: requests });
      const card = (info['credit_balance'] as Json[])[0] as Json;
      expect(card['balance']).toBe(microsToUsd(50_000_000 - spent));
    }
  });

  it('billing/usage: today’s cost per model in cents, equal to credit_used, immediately', async () => {
    const today = ymd(Date.now());
    const tomorrow = ymd(Date.now() + DAY_MS);
    const res = await call(gw, `/dashboard/billing/usage?start_date=${today}&end_date=${tomorrow}`, {
      key: alice.key,
    });
    expect(res.status).toBe(200);
    const usage = await json(res);
    expect(sortedKeys(usage)).toEqual(['daily_costs', 'object', 'total_usage']);
    expect(usage['object']).toBe('list');
    expect(usage['total_usage']).toBeCloseTo(spent / 10_000, 10);
    expect(usage['daily_costs']).toEqual([
      {
        timestamp: Date.parse(`${today}T00:00:00Z`) / 1000,
        line_items: [{ name: 'gpt-4o-mini', cost: spent / 10_000 }],
      },
    ]);
    const info = await json(await call(gw, '/dashboard/x_user/info', { key: alice.key }));
    expect((usage['total_usage'] as number) / 100).toBeCloseTo(info['credit_used'] as number, 10);
  });

  it('billing/usage through the SDK (/v1 prefix) sees a request the moment it returned', async () => {
    const client = gw.client(alice.key);
    const query = { start_date: ymd(Date.now() - DAY_MS), end_date: ymd(Date.now() + DAY_MS) };
    const before = await client.get<Json>('/dashboard/billing/usage', { query });
    expect(before['total_usage']).toBeCloseTo(spent / 10_000, 10);
    expect(gw.app.writer.pending).toBe(0);
    // No background flush can run (60 s interval): the row sits in the write batch when we ask.
    spent += await chat(gw, alice.key, 'One more, please');
    requests++;
    expect(gw.app.writer.pending).toBeGreaterThan(0);
    const after = await client.get<Json>('/dashboard/billing/usage', { query });
    expect(after['total_usage']).toBeCloseTo(spent / 10_000, 10);
    const days = after['daily_costs'] as Json[];
    expect(days).toHaveLength(2);
    expect(days[0]).toEqual({
      timestamp: Date.parse(`${query.start_date}T00:00:00Z`) / 1000,
      line_items: [],
    });
    expect(days[1]?.['line_items']).toEqual([{ name: 'gpt-4o-mini', cost: spent / 10_000 }]);
  });

  it('billing/usage lists every day of the range, empty days included', async () => {
    const res = await call(gw, '/v1/dashboard/billing/usage?start_date=2024-02-01&end_date=2024-03-01', {
      key: alice.key,
    });
    expect(res.status).toBe(200);
    const usage = await json(res);
    const days = usage['daily_costs'] as Json[];
    expect(days).toHaveLength(29);
    days.forEach((d, i) => {
      expect(d).toEqual({ timestamp: Date.UTC(2024, 1, 1 + i) / 1000, line_items: [] });
    });
    expect(usage['total_usage']).toBe(0);
    // Exactly 12 months (366 days across a leap day) is accepted.
    const year = await call(gw, '/dashboard/billing/usage?start_date=2024-01-01&end_date=2025-01-01', {
      key: alice.key,
    });
    expect(year.status).toBe(200);
    expect(((await json(year))['daily_costs'] as Json[]).length).toBe(366);
  });

  it('billing/usage rejects missing, malformed, reversed and too long ranges with 400', async () => {
    const cases: Array<[string, string]> = [
      ['', 'start_date'],
      ['?end_date=2024-01-02', 'start_date'],
      ['?start_date=2024-01-01', 'end_date'],
      ['?start_date=2024-1-01&end_date=2024-01-02', 'start_date'],
      ['?start_date=2024-02-30&end_date=2024-03-02', 'start_date'],
      ['?start_date=2024-01-01&end_date=2024-13-01', 'end_date'],
      ['?start_date=yesterday&end_date=2024-01-02', 'start_date'],
      ['?start_date=2024-01-02&end_date=2024-01-02', 'end_date'],
      ['?start_date=2024-01-05&end_date=2024-01-02', 'end_date'],
      ['?start_date=2024-01-01&end_date=2025-01-02', 'end_date'],
      ['?start_date=2023-01-01&end_date=2025-01-01', 'end_date'],
    ];
    for (const [query, param] of cases) {
      for (const prefix of ['', '/v1']) {
        const res = await call(gw, `${prefix}/dashboard/billing/usage${query}`, { key: alice.key });
        expect(res.status, `${prefix} ${query}`).toBe(400);
        const body = await json(res);
        expect(body['error']).toMatchObject({ type: 'invalid_request_error', code: 'invalid_value', param });
      }
    }
  });

  it('billing/subscription: OpenAI legacy key set; hard_limit_usd = min(HardLimit, month + balance)', async () => {
    for (const prefix of ['', '/v1']) {
      const res = await call(gw, `${prefix}/dashboard/billing/subscription`, { key: alice.key });
      expect(res.status).toBe(200);
      const sub = await json(res);
      expect(sortedKeys(sub)).toEqual(SUBSCRIPTION_KEYS);
      expect(sub).toMatchObject({
        object: 'billing_subscription',
        has_payment_method: false,
        canceled: false,
        canceled_at: null,
        delinquent: null,
        plan: { title: 'ProxyXAI', id: 'proxyxai' },
        account_name: 'alice',
        billing_email: 'alice@example.com',
        po_number: null,
        tax_ids: null,
        billing_address: null,
        business_address: null,
        // Month spend + live balance = the $50 granted, below the $100 HardLimit.
        hard_limit_usd: 50,
        hard_limit: 50,
        soft_limit_usd: 80,
        soft_limit: 80,
        system_hard_limit_usd: 100,
        system_hard_limit: 100,
      });
      const accessUntil = sub['access_until'] as number;
      expect(Number.isInteger(accessUntil)).toBe(true);
      expect(Math.abs(accessUntil - (Date.now() + 365 * DAY_MS) / 1000)).toBeLessThan(120);
    }
    // The SDK's raw request works too (what third-party clients do).
    const viaSdk = await gw.client(alice.key).get<Json>('/dashboard/billing/subscription');
    expect(viaSdk['hard_limit_usd']).toBe(50);
  });

  it('billing/credit_grants: one grant per live card, totals in USD', async () => {
    for (const prefix of ['', '/v1']) {
      const res = await call(gw, `${prefix}/dashboard/billing/credit_grants`, { key: alice.key });
      expect(res.status).toBe(200);
      const summary = await json(res);
      expect(sortedKeys(summary)).toEqual([
        'grants',
        'object',
        'total_available',
        'total_granted',
        'total_used',
      ]);
      expect(summary).toMatchObject({
        object: 'credit_summary',
        total_granted: 50,
        total_used: microsToUsd(spent),
        total_available: microsToUsd(50_000_000 - spent),
      });
      const grants = summary['grants'] as Json;
      expect(sortedKeys(grants)).toEqual(['data', 'object']);
      expect(grants['object']).toBe('list');
      const data = grants['data'] as Json[];
      expect(data).toHaveLength(1);
      const grant = data[0] as Json;
      expect(sortedKeys(grant)).toEqual([
        'effective_at',
        'expires_at',
        'grant_amount',
        'id',
        'object',
        'used_amount',
      ]);
      expect(grant).toMatchObject({
        object: 'credit_grant',
        grant_amount: 50,
        used_amount: microsToUsd(spent),
      });
      expect(typeof grant['id']).toBe('string');
      expect((grant['expires_at'] as number) - (grant['effective_at'] as number)).toBe(365 * 86_400);
    }
  });

  it('root: numeric "unlimited" values where OpenAI clients need numbers', async () => {
    const sub = await json(await call(gw, '/v1/dashboard/billing/subscription'));
    expect(sortedKeys(sub)).toEqual(SUBSCRIPTION_KEYS);
    expect(sub).toMatchObject({ hard_limit_usd: 1e9, system_hard_limit_usd: 1e9, access_until: 0 });
    const grants = await json(await call(gw, '/v1/dashboard/billing/credit_grants'));
    expect(grants).toMatchObject({
      object: 'credit_summary',
      total_available: 1e9,
      total_used: 0,
      grants: { object: 'list', data: [] },
    });
  });

  it('root sees its own usage, not its children’s', async () => {
    await chat(gw, ROOT_KEY, 'root speaking');
    const today = ymd(Date.now());
    const usage = await json(
      await call(gw, `/dashboard/billing/usage?start_date=${today}&end_date=${ymd(Date.now() + DAY_MS)}`),
    );
    const items = (usage['daily_costs'] as Json[])[0]?.['line_items'] as Json[];
    expect(items).toHaveLength(1);
    const rootInfo = await json(await call(gw, '/dashboard/x_user/info'));
    expect(rootInfo['daily_usage']).toMatchObject({ Requests: 1 });
    expect(usage['total_usage']).toBeCloseTo((rootInfo['credit_used'] as number) * 100, 8);
    const aliceInfo = await json(await call(gw, '/dashboard/x_user/info', { key: alice.key }));
    expect(aliceInfo['monthly_usage']).toMatchObject({ Requests: requests });
  });

  it('only GET: other methods answer 405 with Allow, unknown dashboard paths 404', async () => {
    const paths = [
      '/dashboard/x_user/info',
      '/dashboard/billing/usage',
      '/dashboard/billing/subscription',
      '/dashboard/billing/credit_grants',
    ];
    for (const path of paths) {
      for (const prefix of ['', '/v1']) {
        for (const method of ['POST', 'PUT', 'DELETE']) {
          const res = await call(gw, prefix + path, { method, key: alice.key, body: {} });
          expect(res.status, `${method} ${prefix}${path}`).toBe(405);
          expect(res.headers.get('allow')).toBe('GET');
          expect((await json(res))['error']).toMatchObject({ code: 'method_not_allowed' });
        }
      }
    }
    for (const path of ['/dashboard/nope', '/v1/dashboard/billing/nope', '/dashboard/x_user/info/extra']) {
      const res = await call(gw, path, { key: alice.key });
      expect(res.status, path).toBe(404);
    }
  });

  it('unknown or missing keys get 401 and no account data', async () => {
    for (const path of ['/dashboard/x_user/info', '/v1/dashboard/billing/subscription']) {
      const unknown = await call(gw, path, { key: 'sk-Xvs' + 'x'.repeat(45) });
      expect(unknown.status).toBe(401);
      const none = await call(gw, path, { key: '' });
      expect(none.status).toBe(401);
    }
  });
});

describe('dashboard calendar: time zone and day / month rollover', () => {
  let mock: MockUpstream;
  let gw: TestGateway;
  // 2025-01-31 20:00 in Asia/Shanghai (UTC+8): four hours before both a new day and a new month.
  let now = Date.UTC(2025, 0, 31, 12, 0, 0);

  beforeAll(async () => {
    mock = await startMockUpstream();
    gw = await startGateway(
      { OPENAI_API_BASE: mock.url, INIT_KEYS: UPSTREAM_KEY, TZ: 'Asia/Shanghai', FLUSH_INTERVAL_MS: '60000' },
      { app: { clock: () => now } },
    );
  });

  afterAll(async () => {
    await gw.stop();
    removeDir(gw.dataDir);
    await mock.close();
  });

  it('usage days and timestamps follow TZ; a new day and month start at zero', async () => {
    const child = await createChild(gw, 'bobby', 'bobby@example.com', 10);
    const cost = await chat(gw, child.key, 'Hello from Shanghai');
    let info = await json(await call(gw, '/dashboard/x_user/info', { key: child.key }));
    expect(info['daily_usage']).toEqual({ CreditUsed: microsToUsd(cost), Requests: 1 });

    const usage = await json(
      await call(gw, '/dashboard/billing/usage?start_date=2025-01-31&end_date=2025-02-02', {
        key: child.key,
      }),
    );
    // 00:00 in Shanghai is 16:00 UTC the day before.
    expect(usage['daily_costs']).toEqual([
      {
        timestamp: Date.UTC(2025, 0, 30, 16) / 1000,
        line_items: [{ name: 'gpt-4o-mini', cost: cost / 10_000 }],
      },
      { timestamp: Date.UTC(2025, 0, 31, 16) / 1000, line_items: [] },
    ]);

    now += 5 * 3_600_000; // 2025-02-01 01:00 in Shanghai
    info = await json(await call(gw, '/dashboard/x_user/info', { key: child.key }));
    expect(info['daily_usage']).toEqual({ CreditUsed: 0, Requests: 0 });
    expect(info['monthly_usage']).toEqual({ CreditUsed: 0, Requests: 0 });
    expect(info['credit_used']).toBe(microsToUsd(cost));
    const sub = await json(await call(gw, '/dashboard/billing/subscription', { key: child.key }));
    // A new month: nothing spent yet, so the reachable limit is just the remaining balance.
    expect(sub['hard_limit_usd']).toBe(microsToUsd(10_000_000 - cost));

    // Once the card has expired its value is gone: no live card, zero balance and grants.
    now += 366 * DAY_MS;
    info = await json(await call(gw, '/dashboard/x_user/info', { key: child.key }));
    expect(info).toMatchObject({ balance: 0, credit_balance: [] });
    const grants = await json(await call(gw, '/dashboard/billing/credit_grants', { key: child.key }));
    expect(grants).toMatchObject({ total_available: 0, total_granted: 0, grants: { data: [] } });
    const expired = await json(await call(gw, '/dashboard/billing/subscription', { key: child.key }));
    expect(expired['access_until']).toBeLessThan(now / 1000);
  });
});
