// End-to-end: retries on other keys, key retirement, cooling, abort propagation, hot key add.
import { afterEach, describe, expect, it } from 'vitest';
import { startMockUpstream, waitFor, type MockUpstream } from '../support/mock-upstream.js';
import { startGateway, call, ROOT_KEY, type TestGateway } from '../support/gateway.js';

const key = (n: number): string => `sk-upstream-health-${String(n).padStart(16, '0')}`;
let mock: MockUpstream | undefined;
let gw: TestGateway | undefined;

afterEach(async () => {
  await gw?.stop();
  await mock?.close();
  gw = undefined;
  mock = undefined;
});

async function setup(
  keys: string[],
  env: Record<string, string> = {},
): Promise<{ mock: MockUpstream; gw: TestGateway }> {
  mock = await startMockUpstream();
  gw = await startGateway({ OPENAI_API_BASE: mock.url, INIT_KEYS: keys.join(','), ...env });
  return { mock, gw };
}

const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'hi' }] };

describe('retry on another key', () => {
  it('serves 1,000 requests with 2 of 3 keys failing, each in at most 3 attempts', async () => {
    const { mock, gw } = await setup([key(1), key(2), key(3)]);
    mock.setKey(key(1), { kind: 'error500' });
    mock.setKey(key(2), { kind: 'error503' });
    const client = gw.client();
    let ok = 0;
    for (let batch = 0; batch < 20; batch++) {
      const results = await Promise.all(
        Array.from({ length: 50 }, () => client.chat.completions.create(chat)),
      );
      ok += results.filter((r) => r.object === 'chat.completion').length;
    }
    expect(ok).toBe(1000);
    await gw.app.writer.flush();
    const rows = await gw.app.store.db.selectFrom('usage_records').select(['attempts', 'status']).execute();
    expect(rows).toHaveLength(1000);
    expect(Math.max(...rows.map((r) => r.attempts))).toBeLessThanOrEqual(3);
    expect(rows.every((r) => r.status === 200)).toBe(true);
    // Outlier ejection keeps the failing keys out most of the time.
    expect(mock.requests.length).toBeLessThan(1300);
  });

  it('passes the last upstream 5xx through when every key fails', async () => {
    const { mock, gw } = await setup([key(1), key(2)]);
    mock.setDefault({ kind: 'error503' });
    const r = await call(gw, '/v1/chat/completions', { body: chat });
    expect(r.status).toBe(503);
    expect(((await r.json()) as { error: { type: string } }).error.type).toBeTruthy();
    expect(mock.requests).toHaveLength(2);
  });

  it('does not retry client errors (400) and passes them through', async () => {
    const { mock, gw } = await setup([key(1), key(2)]);
    mock.setDefault({
      kind: 'status',
      status: 400,
      body: { error: { message: 'bad param', type: 'invalid_request_error', param: 'x', code: null } },
    });
    const r = await call(gw, '/v1/chat/completions', { body: chat });
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: { message: string } }).error.message).toBe('bad param');
    expect(mock.requests).toHaveLength(1);
  });

  it('moves on from a hanging key after the attempt timeout', async () => {
    const { mock, gw } = await setup([key(1), key(2)], { UPSTREAM_ATTEMPT_TIMEOUT_MS: '300' });
    mock.setKey(key(1), { kind: 'hang' });
    const results = await Promise.all([1, 2, 3, 4].map(() => gw.client().chat.completions.create(chat)));
    expect(results).toHaveLength(4);
    expect(mock.requests.some((r) => r.key === key(1))).toBe(true);
  });

  it('returns 502 when the upstream cannot be reached at all', async () => {
    gw = await startGateway({ OPENAI_API_BASE: 'http://127.0.0.1:9', INIT_KEYS: key(1) });
    const r = await call(gw, '/v1/chat/completions', { body: chat });
    expect(r.status).toBe(502);
  });
});

describe('key health', () => {
  it('disables an invalid key after its first 401 and sends it no more traffic', async () => {
    const { mock, gw } = await setup([key(1), key(2)]);
    mock.setKey(key(1), { kind: 'invalid-key' });
    for (let i = 0; i < 20; i++) await gw.client().chat.completions.create(chat);
    expect(mock.requests.filter((r) => r.key === key(1))).toHaveLength(1);
    const keys = (await (await call(gw, '/x-keys')).json()) as Array<{
      Key: string;
      Status: string;
      Reason: string;
    }>;
    const bad = keys.find((k) => k.Key.endsWith(key(1).slice(-4)));
    expect(bad?.Status).toBe('disabled');
    expect(bad?.Reason).toBe('invalid_api_key');
  });

  it('parks a key that is out of quota', async () => {
    const { mock, gw } = await setup([key(1), key(2)]);
    mock.setKey(key(1), { kind: 'insufficient-quota' });
    for (let i = 0; i < 6; i++) await gw.client().chat.completions.create(chat);
    expect(mock.requests.filter((r) => r.key === key(1))).toHaveLength(1);
    const keys = (await (await call(gw, '/x-keys')).json()) as Array<{
      ID: number;
      Status: string;
      Reason: string;
    }>;
    expect(keys.find((k) => k.Status === 'parked')?.Reason).toBe('insufficient_quota');
  });

  it('re-probes a parked key after the probe interval and re-enables it when it works', async () => {
    const { mock, gw } = await setup([key(1), key(2)], { KEY_PROBE_INTERVAL_MS: '1000' });
    mock.setKey(key(1), { kind: 'insufficient-quota' });
    for (let i = 0; i < 4; i++) await gw.client().chat.completions.create(chat);
    mock.setKey(key(1), { kind: 'ok' });
    await new Promise((r) => setTimeout(r, 1100));
    for (let i = 0; i < 4; i++) await gw.client().chat.completions.create(chat);
    const keys = (await (await call(gw, '/x-keys')).json()) as Array<{ Status: string }>;
    expect(keys.every((k) => k.Status === 'active')).toBe(true);
  });

  it('cools a rate-limited key for Retry-After, then uses it again', async () => {
    const { mock, gw } = await setup([key(1), key(2)]);
    mock.setKey(key(1), { kind: 'rate-limited', retryAfterSec: 1 });
    for (let i = 0; i < 6; i++) await gw.client().chat.completions.create(chat);
    expect(mock.requests.filter((r) => r.key === key(1))).toHaveLength(1);
    mock.setKey(key(1), { kind: 'ok' });
    await new Promise((r) => setTimeout(r, 1100));
    for (let i = 0; i < 4; i++) await gw.client().chat.completions.create(chat);
    expect(mock.requests.filter((r) => r.key === key(1)).length).toBeGreaterThanOrEqual(2);
  });

  it('never ejects the last usable key for transient errors', async () => {
    const { mock, gw } = await setup([key(1)]);
    mock.setKey(key(1), { kind: 'error500' });
    for (let i = 0; i < 5; i++)
      expect((await call(gw, '/v1/chat/completions', { body: chat })).status).toBe(500);
    mock.setKey(key(1), { kind: 'ok' });
    expect((await call(gw, '/v1/chat/completions', { body: chat })).status).toBe(200);
  });
});

describe('streaming', () => {
  it('never retries once the first byte reached the client', async () => {
    const { mock, gw } = await setup([key(1), key(2)]);
    mock.setStream({ chunks: 10, content: 'a b c d e f g h i j' });
    mock.setDefault({ kind: 'drop-mid-stream', afterChunks: 3 });
    const stream = await gw.client().chat.completions.create({ ...chat, stream: true });
    let got = 0;
    await expect(
      (async () => {
        for await (const c of stream) if (c.choices[0]?.delta.content) got++;
      })(),
    ).rejects.toThrow();
    expect(got).toBeGreaterThan(0);
    expect(mock.requests).toHaveLength(1);
  });

  it('aborts the upstream request within 500 ms of a client disconnect', async () => {
    const { mock, gw } = await setup([key(1)]);
    mock.setStream({ chunks: 50, intervalMs: 100 });
    const controller = new AbortController();
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ROOT_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...chat, stream: true }),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    const t0 = Date.now();
    controller.abort();
    const rec = await waitFor(() => mock.requests[0]?.aborted && mock.requests[0], 2000);
    expect((rec.abortedAt ?? Infinity) - t0).toBeLessThan(500);
  });
});

describe('key admin', () => {
  it('a key added over /x-keys serves the very next request', async () => {
    const { mock, gw } = await setup([]);
    expect((await call(gw, '/v1/chat/completions', { body: chat })).status).toBe(503);
    expect((await fetch(`${gw.url}/readyz`)).status).toBe(503);
    const add = await call(gw, '/x-keys', { body: { SecretKey: key(9) }, raw: true });
    expect(add.status).toBe(200);
    expect((await call(gw, '/v1/chat/completions', { body: chat })).status).toBe(200);
    expect(mock.requests[0]?.key).toBe(key(9));
    expect((await call(gw, '/x-keys', { body: { SecretKey: key(9) } })).status).toBe(409);
  });

  it('disables, enables and deletes keys', async () => {
    const { mock, gw } = await setup([key(1), key(2)]);
    const list = (await (await call(gw, '/x-keys')).json()) as Array<{ ID: number; Key: string }>;
    expect(list.map((k) => k.Key)).toEqual([`sk-...${key(1).slice(-4)}`, `sk-...${key(2).slice(-4)}`]);
    const id1 = list[0]!.ID;
    expect((await call(gw, `/x-keys/${id1}`, { method: 'PUT', body: { Status: false } })).status).toBe(200);
    for (let i = 0; i < 4; i++) await gw.client().chat.completions.create(chat);
    expect(mock.requests.every((r) => r.key === key(2))).toBe(true);
    expect((await call(gw, `/x-keys/${id1}`, { method: 'PUT', body: { Status: 'yes' } })).status).toBe(400);
    expect((await call(gw, `/x-keys/${id1}`, { method: 'PUT', body: { Status: true } })).status).toBe(200);
    expect((await call(gw, `/x-keys/${id1}`, { method: 'DELETE' })).status).toBe(200);
    expect((await call(gw, `/x-keys/${id1}`, { method: 'DELETE' })).status).toBe(404);
    expect((await (await call(gw, '/x-keys')).json()) as unknown[]).toHaveLength(1);
  });
});

describe('concurrent key admin', () => {
  it('two concurrent adds of the same key: one 200, one 409', async () => {
    const { gw } = await setup([]);
    const statuses = await Promise.all(
      [1, 2].map(async () => (await call(gw, '/x-keys', { body: { SecretKey: key(42) } })).status),
    );
    expect(statuses.sort()).toEqual([200, 409]);
    expect((await (await call(gw, '/x-keys')).json()) as unknown[]).toHaveLength(1);
  });
});
