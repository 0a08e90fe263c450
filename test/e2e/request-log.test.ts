// End-to-end: the request log (GET /x-logs). What each row says, who may see which rows, the
// filters, keyset paging, the CSV export and the 400s of bad input.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { call, startGateway, type TestGateway } from '../support/gateway.js';
import { createChild, loadedByName } from '../support/accounts.js';

const K1 = 'sk-upstream-log-aaaaaaaaaaaaaaaaaaaa0001';
let mock: MockUpstream;
let gw: TestGateway;
let alpha: string;
let alphaKid: string;
let beta: string;
/** The id the refused request's answer carried. */
let refusedId: string;

interface Row {
  request_id: string;
  created: number;
  created_at: string;
  account_id: number;
  account_name: string | null;
  endpoint: string;
  model: string;
  stream: boolean;
  prompt_tokens: number;
  completion_tokens: number;
  cost: number;
  cost_micros: number;
  rates: number;
  cost_at_caller_rates?: number;
  outcome: string;
  error_code: string | null;
  status: number;
  latency_ms: number | null;
  ttfb_ms: number | null;
  attempts: number;
  client_ip: string | null;
}

async function logs(key: string, query = ''): Promise<{ status: number; rows: Row[]; headers: Headers }> {
  const r = await call(gw, `/x-logs${query}`, { key });
  const body = (await r.json()) as Row[];
  return { status: r.status, rows: body, headers: r.headers };
}

function id(name: string): number {
  const a = loadedByName(gw.app, name);
  if (a === undefined) throw new Error(name);
  return a.id;
}

const chat = (model = 'gpt-4o-mini', stream = false) => ({
  model,
  stream,
  messages: [{ role: 'user' as const, content: 'hello there, how are you?' }],
});

beforeAll(async () => {
  mock = await startMockUpstream();
  gw = await startGateway({ OPENAI_API_BASE: mock.url, INIT_KEYS: K1 });
  alpha = await createChild(gw, 'alpha', 50);
  beta = await createChild(gw, 'beta', 50);
  alphaKid = await createChild(gw, 'alphakid', 10, { Rates: 2 }, alpha);
  // alpha: two models, one stream; its child: one request; beta: one; root: one.
  await gw.client(alpha).chat.completions.create(chat('gpt-4o-mini'));
  const stream = await gw.client(alpha).chat.completions.create({ ...chat('gpt-4o'), stream: true });
  for await (const _ of stream) void _;
  await gw.client(alphaKid).chat.completions.create(chat('gpt-4o-mini'));
  await gw.client(beta).chat.completions.create(chat('gpt-4o-mini'));
  await gw.client().chat.completions.create(chat('gpt-4o-mini'));
  // Refused after authentication: a model the child may not use.
  await call(gw, '/x-users/alphakid', { method: 'PUT', key: alpha, body: { AllowModels: ['gpt-4o-mini'] } });
  const refused = await call(gw, '/v1/chat/completions', { key: alphaKid, body: chat('gpt-4o') });
  expect(refused.status).toBe(403);
  refusedId = refused.headers.get('x-request-id') ?? '';
});
afterAll(async () => {
  await gw.stop();
  await mock.close();
});

describe('rows', () => {
  it('lists a completed request with its tokens, cost, timing and origin, and the ledger agrees', async () => {
    const { status, rows } = await logs(alpha, '?descendants=false');
    expect(status).toBe(200);
    expect(rows.map((r) => r.model)).toEqual(['gpt-4o', 'gpt-4o-mini']);
    const [streamed, plain] = rows as [Row, Row];
    expect(streamed.stream).toBe(true);
    expect(plain.stream).toBe(false);
    for (const r of rows) {
      expect(r).toMatchObject({
        account_id: id('alpha'),
        account_name: 'alpha',
        endpoint: '/v1/chat/completions',
        outcome: 'completed',
        error_code: null,
        status: 200,
        attempts: 1,
        client_ip: '127.0.0.1',
        rates: 1,
      });
      expect(r.prompt_tokens).toBeGreaterThan(0);
      expect(r.completion_tokens).toBeGreaterThan(0);
      expect(r.cost_micros).toBeGreaterThan(0);
      expect(r.cost).toBe(r.cost_micros / 1e6);
      expect(r.latency_ms).toBeGreaterThanOrEqual(0);
      expect(r.ttfb_ms).toBeGreaterThanOrEqual(0);
      expect(r.ttfb_ms!).toBeLessThanOrEqual(r.latency_ms!);
      expect(r.cost_at_caller_rates).toBeUndefined();
    }
    // Newest first; the ledger's usage rows of alpha sum to the same.
    expect(streamed.created).toBeGreaterThanOrEqual(plain.created);
    const ledger = await gw.app.store.db
      .selectFrom('ledger')
      .select(['request_id', 'amount'])
      .where('account_id', '=', id('alpha'))
      .where('kind', '=', 'usage')
      .execute();
    const byId = new Map(ledger.map((l) => [l.request_id, -Number(l.amount)]));
    for (const r of rows) expect(byId.get(r.request_id)).toBe(r.cost_micros);
  });

  it('logs a refused request with its error code, charges nothing and keeps it out of the daily totals', async () => {
    const { rows } = await logs(alphaKid, '?outcome=refused');
    expect(rows).toHaveLength(1);
    expect(refusedId).toMatch(/^req_/);
    expect(rows[0]).toMatchObject({
      request_id: refusedId,
      model: 'gpt-4o',
      outcome: 'refused',
      error_code: 'model_not_allowed',
      status: 403,
      cost_micros: 0,
      attempts: 0,
      ttfb_ms: null,
    });
    const daily = await gw.app.store.db
      .selectFrom('usage_daily')
      .select((eb) => eb.fn.sum<number>('requests').as('n'))
      .where('account_id', '=', id('alphakid'))
      .executeTakeFirst();
    expect(Number(daily?.n)).toBe(1);
  });
});

describe('who sees what', () => {
  it('an account sees its own rows and its descendants’, never a sibling’s or its parent’s', async () => {
    const a = await logs(alpha);
    expect(new Set(a.rows.map((r) => r.account_name))).toEqual(new Set(['alpha', 'alphakid']));
    const kid = await logs(alphaKid);
    expect(new Set(kid.rows.map((r) => r.account_name))).toEqual(new Set(['alphakid']));
    const b = await logs(beta);
    expect(b.rows.map((r) => r.account_name)).toEqual(['beta']);
  });

  it('root sees every account', async () => {
    const r = await call(gw, '/x-logs');
    const rows = (await r.json()) as Row[];
    expect(new Set(rows.map((x) => x.account_name))).toEqual(new Set(['root', 'alpha', 'alphakid', 'beta']));
  });

  it('naming a sibling or a parent is a 400 that does not say whether it exists', async () => {
    for (const [key, ident] of [
      [alpha, 'beta'],
      [alphaKid, 'alpha'],
      [alphaKid, 'root'],
      [alpha, 'nobody-at-all'],
      [alpha, String(id('beta'))],
    ] as const) {
      const r = await call(gw, `/x-logs?account=${encodeURIComponent(ident)}`, { key });
      expect(r.status).toBe(400);
      const body = (await r.json()) as { error: { code: string; param: string; message: string } };
      expect(body.error).toMatchObject({ code: 'invalid_value', param: 'account' });
      expect(body.error.message).toBe(`No account "${ident}" among yours.`);
    }
  });

  it('a descendant named alone, and an ancestor sees the cost at its own Rates', async () => {
    const { rows } = await logs(alpha, '?account=alphakid&descendants=false&outcome=completed');
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row.rates).toBe(2);
    // alphakid pays at Rates 2; alpha's own price for the same request is half of it.
    expect(row.cost_at_caller_rates).toBe(Math.round(row.cost_micros / 2) / 1e6);
  });
});

describe('filters and paging', () => {
  it('filters by model, outcome, minimum cost and time range', async () => {
    const all = (await call(gw, '/x-logs').then((r) => r.json())) as Row[];
    const mini = (await call(gw, '/x-logs?model=gpt-4o-mini').then((r) => r.json())) as Row[];
    expect(mini.length).toBe(all.filter((r) => r.model === 'gpt-4o-mini').length);
    const refusedOrGone = (await call(gw, '/x-logs?outcome=refused,client-gone').then((r) =>
      r.json(),
    )) as Row[];
    expect(refusedOrGone.map((r) => r.outcome)).toEqual(['refused']);
    const max = Math.max(...all.map((r) => r.cost_micros));
    const costly = (await call(gw, `/x-logs?min_cost=${max / 1e6}`).then((r) => r.json())) as Row[];
    expect(costly.length).toBeGreaterThanOrEqual(1);
    expect(costly.every((r) => r.cost_micros === max)).toBe(true);
    const oldest = all[all.length - 1]!;
    const newest = all[0]!;
    const range = (await call(gw, `/x-logs?from=${oldest.created + 1}&to=${newest.created + 1}`).then((r) =>
      r.json(),
    )) as Row[];
    expect(range.length).toBe(all.filter((r) => r.created > oldest.created).length);
    const iso = (await call(gw, `/x-logs?from=${encodeURIComponent(newest.created_at)}`).then((r) =>
      r.json(),
    )) as Row[];
    expect(iso.every((r) => r.created >= newest.created)).toBe(true);
    const future = (await call(gw, '/x-logs?from=2999-01-01').then((r) => r.json())) as Row[];
    expect(future).toEqual([]);
  });

  it('pages newest first by cursor with the paging headers, each row once', async () => {
    const all = (await call(gw, '/x-logs').then((r) => r.json())) as Row[];
    expect(all.length).toBe(6);
    const seen: string[] = [];
    let cursor = '';
    let page = 0;
    for (;;) {
      const r = await call(gw, `/x-logs?size=2&count=true${cursor === '' ? '' : `&cursor=${cursor}`}`);
      page++;
      expect(r.headers.get('x-page')).toBe(String(page));
      expect(r.headers.get('x-per-page')).toBe('2');
      expect(r.headers.get('x-total-count')).toBe('6');
      expect(r.headers.get('x-total-pages')).toBe('3');
      const rows = (await r.json()) as Row[];
      seen.push(...rows.map((x) => x.request_id));
      const next = r.headers.get('x-next-cursor');
      if (next === null) {
        expect(r.headers.get('link')).toBeNull();
        break;
      }
      expect(r.headers.get('link')).toBe(`</x-logs?size=2&count=true&cursor=${next}>; rel="next"`);
      cursor = next;
    }
    expect(page).toBe(3);
    expect(seen).toEqual(all.map((r) => r.request_id));
  });

  it('exports CSV, asked by format or by Accept, with the same rows', async () => {
    const all = (await call(gw, '/x-logs').then((r) => r.json())) as Row[];
    for (const r of [
      await call(gw, '/x-logs?format=csv'),
      await call(gw, '/x-logs', { headers: { accept: 'text/csv' } }),
    ]) {
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe('text/csv; charset=utf-8');
      const lines = (await r.text()).trimEnd().split('\r\n');
      expect(lines[0]).toMatch(/^created_at,request_id,account_id,account_name,endpoint,model,stream,/);
      expect(lines.slice(1).map((l) => l.split(',')[1])).toEqual(all.map((x) => x.request_id));
      const costCol = lines[0]!.split(',').indexOf('cost');
      const csvCost = lines.slice(1).map((l) => l.split(',')[costCol]);
      expect(csvCost).toEqual(all.map((x) => (x.cost_micros / 1e6).toFixed(6)));
    }
  });
});

describe('bad input', () => {
  it.each([
    ['?size=0', 'size'],
    ['?size=1001', 'size'],
    ['?size=ten', 'size'],
    ['?from=yesterday', 'from'],
    ['?from=2026-02-30T10:00:00Z&to=1', 'from'],
    ['?from=2026-11-02&to=2026-11-01', 'from'],
    ['?outcome=won', 'outcome'],
    ['?min_cost=-1', 'min_cost'],
    ['?min_cost=abc', 'min_cost'],
    ['?descendants=maybe', 'descendants'],
    ['?cursor=not-a-cursor', 'cursor'],
    ['?format=xml', 'format'],
  ])('%s is a 400 naming %s', async (query, param) => {
    const r = await call(gw, `/x-logs${query}`);
    expect(r.status).toBe(400);
    const body = (await r.json()) as { error: { type: string; param: string } };
    expect(body.error).toMatchObject({ type: 'invalid_request_error', param });
  });

  it('needs a key, and only GET', async () => {
    expect((await call(gw, '/x-logs', { key: '' })).status).toBe(401);
    expect((await call(gw, '/x-logs', { method: 'POST', body: {} })).status).toBe(405);
  });
});
