// End-to-end: operator metrics on GET /metrics. Real traffic through the gateway (plain and
// streamed chats, a model outside the price table, refusals at the gates, a 5xx retried on the
// other key, a request holding its reservation), then the scrape must equal what the gateway
// billed in its request log, per key what upstream saw, and carry no key, account name or email.
// METRICS_TOKEN guards the route when set. The Grafana dashboard may only name metrics a live
// scrape has, so a renamed metric fails here.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChild, updateChild, loadedByName } from '../support/accounts.js';
import { ROOT_KEY, call, startGateway, type TestGateway } from '../support/gateway.js';
import { startMockUpstream, waitFor, type MockUpstream } from '../support/mock-upstream.js';

const K1 = 'sk-upstream-metrics-aaaaaaaaaaaaaaaa0001';
const K2 = 'sk-upstream-metrics-bbbbbbbbbbbbbbbb0002';
/** Not in config/prices.json: priced by DEFAULT_MODEL_PRICE, so its label must be `other`. */
const UNLISTED = 'my-local-llama-70b';
const chat = (model = 'gpt-4o-mini') => ({
  model,
  messages: [{ role: 'user' as const, content: 'hello there' }],
});

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The sample lines of a Prometheus text exposition. */
function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (m === null) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** Sum of the samples of `name` whose labels include `match`. */
function total(samples: readonly Sample[], name: string, match: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

async function scrape(gw: TestGateway, init: RequestInit = {}): Promise<string> {
  const r = await fetch(`${gw.url}/metrics`, init);
  expect(r.status).toBe(200);
  return r.text();
}

let mock: MockUpstream;
let gw: TestGateway;
const virtualKeys: string[] = [];
const NAMES = ['metrics-alice', 'metrics-broke', 'metrics-picky'];

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

describe('operator metrics from real traffic', () => {
  let reservedWhileWaiting: { scraped: number; accounts: number; registry: number };

  beforeAll(async () => {
    const [alice, broke, picky] = await Promise.all(NAMES.map((n) => createChild(gw, n, 10)));
    virtualKeys.push(alice!, broke!, picky!);
    const client = gw.client(alice);
    // Plain and streamed chats at a listed model; one at a model only the default price covers.
    for (let i = 0; i < 2; i++) await client.chat.completions.create(chat());
    const stream = await client.chat.completions.create({ ...chat(), stream: true });
    for await (const _ of stream) void _;
    await client.chat.completions.create(chat(UNLISTED));
    // Refused at the gates: a balance below the minimum, a model outside the allow-list.
    expect((await updateChild(gw, 'metrics-broke', { CreditGranted: -9.5 })).status).toBe(200);
    expect((await call(gw, '/v1/chat/completions', { key: broke!, body: chat() })).status).toBe(402);
    expect((await updateChild(gw, 'metrics-picky', { AllowModels: 'gpt-4o' })).status).toBe(200);
    expect((await call(gw, '/v1/chat/completions', { key: picky!, body: chat() })).status).toBe(403);
    // K1 answers 500: round robin sends one of two requests to it first, retried on K2.
    mock.setKey(K1, { kind: 'error500' });
    for (let i = 0; i < 2; i++) await client.chat.completions.create(chat());
    mock.setKey(K1, { kind: 'ok' });
    // A request waiting for upstream holds its reservation: scraped while it waits.
    for (const k of [K1, K2]) mock.setKey(k, { kind: 'slow', delayMs: 800 });
    const waiting = client.chat.completions.create(chat());
    await waitFor(() => loadedByName(gw.app, 'metrics-alice')!.reserved > 0);
    const during = parse(await scrape(gw));
    reservedWhileWaiting = {
      scraped: total(during, 'proxyxai_reserved_micros'),
      accounts: total(during, 'proxyxai_reserving_accounts'),
      registry: [...gw.app.registry.all()].reduce((s, a) => s + a.reserved, 0),
    };
    await waiting;
    for (const k of [K1, K2]) mock.setKey(k, { kind: 'ok' });
  });

  /** The request log once every settlement is written, and a scrape taken after it. */
  async function settled(): Promise<{
    rows: Array<Record<string, unknown> & { model: string; outcome: string }>;
    samples: Sample[];
    text: string;
  }> {
    const db = gw.app.store.db;
    return waitFor(async () => {
      await gw.app.writer.flush();
      const rows = await db.selectFrom('usage_records').selectAll().execute();
      const text = await scrape(gw);
      const samples = parse(text);
      return total(samples, 'proxyxai_usage_requests_total') === rows.length && { rows, samples, text };
    });
  }

  it('counts requests, tokens and spend by model and outcome exactly as the request log', async () => {
    const { rows, samples } = await settled();
    const label = (model: string): string => (model === UNLISTED ? 'other' : model);
    const groups = new Map<string, { model: string; outcome: string; rows: typeof rows }>();
    for (const r of rows) {
      const key = `${label(r.model)} ${r.outcome}`;
      const g = groups.get(key) ?? { model: label(r.model), outcome: r.outcome, rows: [] };
      g.rows.push(r);
      groups.set(key, g);
    }
    const sum = (rs: typeof rows, column: string): number => rs.reduce((s, r) => s + Number(r[column]), 0);
    for (const { model, outcome, rows: rs } of groups.values()) {
      const at = { model, outcome };
      expect(total(samples, 'proxyxai_usage_requests_total', at), `${model} ${outcome}`).toBe(rs.length);
      expect(total(samples, 'proxyxai_usage_spend_micros_total', at)).toBe(sum(rs, 'cost'));
      expect(total(samples, 'proxyxai_usage_tokens_total', { ...at, type: 'prompt' })).toBe(
        sum(rs, 'prompt_tokens'),
      );
      expect(total(samples, 'proxyxai_usage_tokens_total', { ...at, type: 'completion' })).toBe(
        sum(rs, 'completion_tokens'),
      );
      expect(total(samples, 'proxyxai_usage_tokens_total', { ...at, type: 'cached' })).toBe(
        sum(rs, 'cached_tokens'),
      );
    }
    // Every series with a count is one of those groups: nothing else was counted.
    const counted = samples.filter((s) => s.name === 'proxyxai_usage_requests_total' && s.value > 0);
    expect(counted.map((s) => `${s.labels['model']} ${s.labels['outcome']}`).sort()).toEqual(
      [...groups.keys()].sort(),
    );
    expect(
      total(samples, 'proxyxai_usage_requests_total', { model: 'gpt-4o-mini', outcome: 'completed' }),
    ).toBe(6);
    expect(
      total(samples, 'proxyxai_usage_requests_total', { model: 'gpt-4o-mini', outcome: 'refused' }),
    ).toBe(2);
    expect(total(samples, 'proxyxai_usage_requests_total', { model: 'other', outcome: 'completed' })).toBe(1);
    expect(total(samples, 'proxyxai_usage_spend_micros_total', { model: 'other' })).toBeGreaterThan(0);
    expect(samples.some((s) => s.labels['model'] === UNLISTED)).toBe(false);
    // The spend is what the accounts were charged.
    const charged = [...gw.app.registry.all()].reduce((s, a) => s + a.creditUsed, 0);
    expect(total(samples, 'proxyxai_usage_spend_micros_total')).toBe(charged);
    expect(charged).toBeGreaterThan(0);
  });

  it('observes the time to first byte of every answer, streamed and not', async () => {
    const { rows, samples } = await settled();
    for (const [stream, flag] of [
      ['true', 1],
      ['false', 0],
    ] as const) {
      const timed = rows.filter((r) => r['ttfb_ms'] !== null && Number(r['stream']) === flag);
      expect(timed.length).toBeGreaterThan(0);
      expect(total(samples, 'proxyxai_ttfb_seconds_count', { stream })).toBe(timed.length);
      expect(total(samples, 'proxyxai_ttfb_seconds_bucket', { stream, le: '+Inf' })).toBe(timed.length);
      expect(total(samples, 'proxyxai_ttfb_seconds_sum', { stream })).toBeCloseTo(
        timed.reduce((s, r) => s + Number(r['ttfb_ms']) / 1000, 0),
        6,
      );
    }
  });

  it('counts upstream attempts, failures and latency by masked key, as upstream saw them', async () => {
    const { samples } = await settled();
    const keys = gw.app.pool.list();
    expect(keys).toHaveLength(2);
    for (const [secret, failing] of [
      [K1, true],
      [K2, false],
    ] as const) {
      const view = keys.find((k) => k.masked.endsWith(secret.slice(-4)))!;
      const at = { key_id: String(view.id), key: `...${secret.slice(-4)}` };
      const seen = mock.requests.filter((r) => r.key === secret).length;
      expect(seen).toBeGreaterThan(0);
      expect(total(samples, 'proxyxai_upstream_key_attempts_total', at)).toBe(seen);
      expect(total(samples, 'proxyxai_upstream_key_latency_seconds_count', at)).toBe(seen);
      const failures = total(samples, 'proxyxai_upstream_key_failures_total', at);
      if (failing) {
        expect(failures).toBeGreaterThan(0);
        expect(total(samples, 'proxyxai_upstream_key_attempts_total', { ...at, outcome: 'transient' })).toBe(
          failures,
        );
      } else expect(failures).toBe(0);
    }
    // The same attempts as the counter by outcome alone.
    expect(total(samples, 'proxyxai_upstream_key_attempts_total')).toBe(
      total(samples, 'proxyxai_upstream_attempts_total'),
    );
  });

  it('shows reservations outstanding while a request waits, none once everything settled', async () => {
    expect(reservedWhileWaiting.scraped).toBeGreaterThan(0);
    expect(reservedWhileWaiting.scraped).toBe(reservedWhileWaiting.registry);
    expect(reservedWhileWaiting.accounts).toBe(1);
    const { samples } = await settled();
    expect(total(samples, 'proxyxai_reserved_micros')).toBe(0);
    expect(total(samples, 'proxyxai_reserving_accounts')).toBe(0);
  });

  it('reports the writer queue, its flush durations and the event-loop delay', async () => {
    const { samples } = await settled();
    expect(samples.some((s) => s.name === 'proxyxai_writer_queued_rows')).toBe(true);
    expect(total(samples, 'proxyxai_writer_failed_flushes')).toBe(0);
    expect(total(samples, 'proxyxai_writer_flush_duration_seconds_count', { result: 'ok' })).toBeGreaterThan(
      0,
    );
    expect(total(samples, 'proxyxai_writer_flush_duration_seconds_count', { result: 'error' })).toBe(0);
    for (const name of ['p50', 'p99', 'max'])
      expect(samples.some((s) => s.name === `proxyxai_nodejs_eventloop_lag_${name}_seconds`)).toBe(true);
  });

  it('never names an upstream key, a virtual key, an account or an email', async () => {
    const { text } = await settled();
    const secrets = [K1, K2, ROOT_KEY, ...virtualKeys];
    expect(virtualKeys.every((k) => k.length > 20)).toBe(true);
    for (const s of secrets) {
      expect(text).not.toContain(s);
      expect(text).not.toContain(s.slice(0, 16));
      expect(text).not.toContain(s.slice(-12));
    }
    for (const name of NAMES) {
      expect(text).not.toContain(name);
      expect(text).not.toContain(`${name}@example.com`);
    }
    expect(text).not.toContain('root@example.com');
    expect(text).not.toContain('sk-');
  });
});

describe('the Grafana dashboard', () => {
  const dashboard = JSON.parse(
    readFileSync(new URL('../../deploy/grafana/proxyxai-dashboard.json', import.meta.url), 'utf8'),
  ) as { panels: Panel[]; templating: { list: Array<{ name: string; type: string }> } };
  interface Panel {
    title?: string;
    type: string;
    datasource?: { uid?: string };
    targets?: Array<{ expr?: string }>;
    panels?: Panel[];
  }
  const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);

  // PromQL words that are not metric names: functions, aggregations, keywords.
  const PROMQL = new Set([
    ...['sum', 'min', 'max', 'avg', 'count', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'group'],
    ...['count_values', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset'],
    ...['and', 'or', 'unless', 'rate', 'irate', 'increase', 'delta', 'idelta', 'deriv', 'histogram_quantile'],
    ...['sum_over_time', 'avg_over_time', 'max_over_time', 'min_over_time', 'abs', 'clamp_min', 'clamp_max'],
    ...['label_replace', 'vector', 'scalar', 'time', 'round', 'ceil', 'floor', 'absent', 'inf', 'nan'],
  ]);

  /** Metric names an expression reads: strings, label matchers, ranges and grouping clauses removed. */
  function metricNames(expr: string): string[] {
    const bare = expr
      .replace(/"(?:[^"\\]|\\.)*"/g, '""')
      .replace(/\{[^}]*\}/g, ' ')
      .replace(/\[[^\]]*\]/g, ' ')
      .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
      .replace(/\$\{?\w+\}?/g, ' ');
    const words = bare.match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? [];
    return words.filter((w) => !PROMQL.has(w.toLowerCase()) && !/^\d/.test(w) && !/^e\d+$/.test(w));
  }

  it('extracts names the way PromQL reads them', () => {
    expect(
      metricNames(
        'histogram_quantile(0.99, sum by (le, key_id) (rate(proxyxai_x_bucket{a="b",c=~"$d"}[$__rate_interval]))) / 1e6',
      ),
    ).toEqual(['proxyxai_x_bucket']);
    expect(metricNames('sum without (instance) (foo_total) * on (job) group_left (x) bar')).toEqual([
      'foo_total',
      'bar',
    ]);
  });

  it('reads every panel from the datasource variable', () => {
    expect(dashboard.templating.list.some((v) => v.type === 'datasource' && v.name === 'datasource')).toBe(
      true,
    );
    for (const p of panels.filter((p) => p.type !== 'row'))
      expect(p.datasource?.uid, p.title).toBe('${datasource}');
  });

  it('names only metrics a live scrape has, after traffic', async () => {
    // Traffic of its own, so this test passes alone too: a chat, a retried 5xx, a refusal, a flush.
    const key = await createChild(gw, 'metrics-grafana', 5);
    await gw.client(key).chat.completions.create(chat());
    mock.setKey(K2, { kind: 'error500' });
    for (let i = 0; i < 2; i++) await gw.client(key).chat.completions.create(chat());
    mock.setKey(K2, { kind: 'ok' });
    await call(gw, '/v1/chat/completions', { key, body: { model: '' } });
    await gw.app.writer.flush();
    const live = new Set(parse(await scrape(gw)).map((s) => s.name));
    const used = new Map<string, string>();
    for (const p of panels)
      for (const t of p.targets ?? [])
        for (const name of metricNames(t.expr ?? '')) used.set(name, p.title ?? '');
    expect(used.size).toBeGreaterThan(15);
    const missing = [...used]
      .filter(([name]) => !live.has(name))
      .map(([name, title]) => `${name} (${title})`);
    expect(missing).toEqual([]);
  });
});

describe('METRICS_TOKEN', () => {
  const TOKEN = 'metrics-token-0123456789abcdef';
  let guarded: TestGateway;
  beforeAll(async () => {
    guarded = await startGateway({ OPENAI_API_BASE: mock.url, INIT_KEYS: K1, METRICS_TOKEN: TOKEN });
  });
  afterAll(() => guarded.stop());

  it('refuses a scrape without the token, or with another, with an OpenAI-shaped 401', async () => {
    for (const authorization of [
      undefined,
      `Bearer ${TOKEN}x`,
      `Bearer ${TOKEN.slice(0, -1)}`,
      TOKEN,
      `Bearer ${ROOT_KEY}`,
    ]) {
      const r = await fetch(`${guarded.url}/metrics`, {
        ...(authorization !== undefined && { headers: { authorization } }),
      });
      expect(r.status, String(authorization)).toBe(401);
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
      const body = (await r.json()) as { error: Record<string, unknown> };
      expect(body.error).toMatchObject({
        type: 'invalid_request_error',
        code: 'invalid_api_key',
        param: null,
      });
      expect(String(body.error['message'])).toContain('METRICS_TOKEN');
    }
  });

  it('serves the metrics with the token', async () => {
    const text = await scrape(guarded, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(text).toContain('proxyxai_usage_requests_total');
    expect(text).not.toContain(TOKEN);
  });

  it('leaves /metrics open when no token is configured', async () => {
    expect((await fetch(`${gw.url}/metrics`)).status).toBe(200);
  });
});
