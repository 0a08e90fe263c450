/**
 * GET /openapi.json on the real gateway, and a sweep over the answers the other end-to-end tests
 * seldom provoke (refused methods, HEAD, the request log as CSV, bad idents, metrics behind a
 * token): every one of them is checked against the description by test/support/gateway.ts, and
 * this file fails at stop() if any disagrees.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPENAPI_DOCUMENT } from '../../src/openapi/openapi-document.js';
import { call, removeDir, ROOT_KEY, startGateway, type TestGateway } from '../support/gateway.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';

const METRICS_TOKEN = 'metrics-token-for-the-openapi-test';

let mock: MockUpstream;
let gw: TestGateway;

beforeAll(async () => {
  mock = await startMockUpstream();
  gw = await startGateway({
    OPENAI_API_BASE: mock.url,
    INIT_KEYS: 'sk-upstream-openapi-000000000001',
    METRICS_TOKEN,
  });
});

afterAll(async () => {
  // Throws if any answer of this file disagreed with the description.
  await gw?.stop();
  await mock?.close();
  if (gw !== undefined) removeDir(gw.dataDir);
});

describe('GET /openapi.json', () => {
  it('serves the description without a key, the same bytes every time', async () => {
    const r = await fetch(`${gw.url}/openapi.json`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/json; charset=utf-8');
    const text = await r.text();
    expect(JSON.parse(text)).toEqual(OPENAPI_DOCUMENT);
    expect(await (await fetch(`${gw.url}/openapi.json`)).text()).toBe(text);
    expect(Number(r.headers.get('content-length'))).toBe(Buffer.byteLength(text));
  });

  it('answers HEAD with the headers only, and other methods as an unknown route', async () => {
    const head = await fetch(`${gw.url}/openapi.json`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    const post = await fetch(`${gw.url}/openapi.json`, { method: 'POST', body: '{}' });
    expect(post.status).toBe(404);
    await post.arrayBuffer();
  });
});

describe('answers the description covers', () => {
  it('refused methods: 405, with Allow where the route says it', async () => {
    const cases: Array<[string, string, string | null]> = [
      ['PATCH', '/x-users', 'GET, POST'],
      ['POST', '/x-users/someone', 'GET, PUT, DELETE'],
      ['DELETE', '/x-dna', 'GET'],
      ['PUT', '/dashboard/billing/usage', 'GET'],
      ['POST', '/v1/dashboard/x_user/info', 'GET'],
      ['DELETE', '/x-logs', 'GET, HEAD'],
      ['PATCH', '/x-keys', null],
      ['PATCH', '/x-keys/1', null],
    ];
    for (const [method, path, allow] of cases) {
      const r = await call(gw, path, { method });
      expect(r.status, `${method} ${path}`).toBe(405);
      expect(r.headers.get('allow')).toBe(allow);
      await r.arrayBuffer();
    }
  });

  it('HEAD and any method on /healthz; a non-preflight OPTIONS is routed like any method', async () => {
    expect((await fetch(`${gw.url}/healthz`, { method: 'HEAD' })).status).toBe(200);
    const post = await fetch(`${gw.url}/healthz`, { method: 'POST' });
    expect(await post.json()).toEqual({ status: 'ok' });
    const options = await call(gw, '/x-users', { method: 'OPTIONS' });
    expect(options.status).toBe(405);
    await options.arrayBuffer();
  });

  it('bad idents and unknown keys', async () => {
    const bad = await call(gw, '/x-users/%E0%A4%A');
    expect(bad.status).toBe(400);
    await bad.arrayBuffer();
    for (const path of ['/x-keys/abc', '/x-keys/999999', '/x-dna/nobody']) {
      const r = await call(gw, path);
      expect(r.status, path).toBe(404);
      await r.arrayBuffer();
    }
    const me = await call(gw, '/x-users/root', { method: 'DELETE' });
    expect(me.status).toBe(403);
    await me.arrayBuffer();
  });

  it('the request log as JSON and as CSV, and a bad parameter', async () => {
    const child = await call(gw, '/x-users', {
      body: { Name: 'openapi-kid', Email: 'openapi-kid@example.com', CreditGranted: 50 },
    });
    expect(child.status).toBe(200);
    const key = ((await child.json()) as { User: { SecretKey: string } }).User.SecretKey;
    const chat = await call(gw, '/v1/chat/completions', {
      key,
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
    });
    await chat.arrayBuffer();
    const page = await call(gw, '/x-logs?size=1&count=true');
    expect(page.status).toBe(200);
    await page.arrayBuffer();
    const csv = await call(gw, '/x-logs?format=csv');
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toMatch(/^text\/csv/);
    await csv.arrayBuffer();
    const wrong = await call(gw, '/x-logs?size=0');
    expect(wrong.status).toBe(400);
    await wrong.arrayBuffer();
  });

  it('metrics behind METRICS_TOKEN, readiness', async () => {
    const refused = await fetch(`${gw.url}/metrics`);
    expect(refused.status).toBe(401);
    await refused.arrayBuffer();
    const metrics = await fetch(`${gw.url}/metrics`, {
      headers: { authorization: `Bearer ${METRICS_TOKEN}` },
    });
    expect(metrics.status).toBe(200);
    await metrics.arrayBuffer();
    const ready = await fetch(`${gw.url}/readyz`);
    expect(ready.status).toBe(200);
    await ready.arrayBuffer();
  });

  it('checked every one of these answers (the check is wired in)', async () => {
    const unknown = await call(gw, '/x-nothing-here', { key: ROOT_KEY });
    expect(unknown.status).toBe(404);
    await unknown.arrayBuffer();
    expect(gw.openapi.checked).toBeGreaterThanOrEqual(27);
    expect(gw.openapi.violations).toEqual([]);
  });
});
