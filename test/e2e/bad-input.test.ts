// End-to-end: every class of bad input gets a clear OpenAI-shaped 4xx and never reaches upstream.
import { request } from 'node:http';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { startGateway, call, type TestGateway } from '../support/gateway.js';

let mock: MockUpstream;
let gw: TestGateway;
beforeAll(async () => {
  mock = await startMockUpstream();
  gw = await startGateway({
    OPENAI_API_BASE: mock.url,
    INIT_KEYS: 'sk-upstream-bad-input-000000000001',
    MAX_BODY_MB: '0.0625',
  });
});
afterAll(async () => {
  await gw.stop();
  await mock.close();
});
let mayReachUpstream = false;
beforeEach(() => {
  mock.reset();
  mayReachUpstream = false;
});
// Every bad request below must be refused by the gateway itself.
afterEach(() => {
  if (!mayReachUpstream) expect(mock.requests).toHaveLength(0);
});

type ErrorBody = { error: { message: string; type: string; param: string | null; code: string | null } };

async function expectError(r: Response, status: number, code?: string): Promise<ErrorBody> {
  expect(r.status).toBe(status);
  const body = (await r.json()) as ErrorBody;
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(body.error.message.length).toBeGreaterThan(0);
  if (code !== undefined) expect(body.error.code).toBe(code);
  return body;
}

/** Sends a raw request and resolves with the status the client actually received. */
function rawPost(
  path: string,
  headers: Record<string, string>,
  chunks: Buffer[],
  pauseMs = 0,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(gw.url + path);
    const req = request(
      { host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    void (async () => {
      for (const c of chunks) {
        if (req.destroyed) break;
        req.write(c);
        if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
      }
      req.end();
    })();
  });
}

describe('bad input never reaches upstream', () => {
  it('malformed JSON → 400', async () => {
    await expectError(
      await call(gw, '/v1/chat/completions', { body: '{"model": "gpt-4o-mini", ' }),
      400,
      'invalid_json',
    );
  });

  it('non-object JSON → 400', async () => {
    for (const body of ['[1,2]', '"text"', '42', 'null']) {
      await expectError(await call(gw, '/v1/chat/completions', { body }), 400, 'invalid_body');
    }
  });

  it('a model that is not a string → 400 naming the param', async () => {
    const b = await expectError(
      await call(gw, '/v1/chat/completions', { body: { model: 7, messages: [] } }),
      400,
    );
    expect(b.error.param).toBe('model');
  });

  it('a body over MAX_BODY_MB with Content-Length → 413, received by the client', async () => {
    const big = Buffer.alloc(1024 * 1024, 0x61);
    const r = await rawPost(
      '/v1/chat/completions',
      {
        authorization: 'Bearer ' + (await rootKey()),
        'content-type': 'application/json',
        'content-length': String(big.length),
      },
      [big],
    );
    expect(r.status).toBe(413);
    expect(JSON.parse(r.body).error.code).toBe('request_too_large');
  });

  it('a chunked body that grows past the limit → 413 while streaming in, received by the client', async () => {
    const chunk = Buffer.alloc(16 * 1024, 0x61);
    const chunks = Array.from({ length: 64 }, () => chunk);
    const r = await rawPost(
      '/v1/chat/completions',
      { authorization: 'Bearer ' + (await rootKey()), 'content-type': 'application/json' },
      chunks,
      2,
    );
    expect(r.status).toBe(413);
  });

  it('missing key → 401, unknown key → 401', async () => {
    await expectError(await call(gw, '/v1/models', { key: '' }), 401, 'invalid_api_key');
    await expectError(
      await call(gw, '/v1/models', { key: 'sk-Xvs' + 'x'.repeat(45) }),
      401,
      'invalid_api_key',
    );
    await expectError(await call(gw, '/x-keys', { key: 'nope' }), 401, 'invalid_api_key');
  });

  it('wrong types in admin bodies → 400', async () => {
    const b = await expectError(await call(gw, '/x-keys', { body: { SecretKey: 123 } }), 400);
    expect(b.error.param).toBe('SecretKey');
    await expectError(await call(gw, '/x-keys', { body: '[]' }), 400);
    await expectError(await call(gw, '/x-keys', { body: '{bad' }), 400, 'invalid_json');
  });

  it('__proto__ and constructor keys have no effect', async () => {
    mayReachUpstream = true;
    const r = await call(gw, '/x-keys', {
      body: '{"__proto__":{"isRoot":true,"polluted":1},"constructor":{"prototype":{"polluted":1}},"SecretKey":"sk-upstream-proto-test-0000000001"}',
    });
    expect(r.status).toBe(200);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    const chat = await call(gw, '/v1/chat/completions', {
      body: '{"__proto__":{"stream":true},"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}]}',
    });
    expect(chat.status).toBe(200);
    expect(chat.headers.get('content-type')).toContain('application/json');
  });

  it('unknown admin routes → 404, wrong methods → 405', async () => {
    await expectError(await call(gw, '/x-unknown'), 404, 'not_found');
    await expectError(await call(gw, '/x-keys/abc'), 404);
    await expectError(await call(gw, '/x-keys', { method: 'PATCH' }), 405);
  });

  it('path traversal on static paths → 404, never a file outside pages/', async () => {
    for (const p of [
      '/docs/../package.json',
      '/docs/%2e%2e/package.json',
      '/billing/..%2f..%2fpackage.json',
      '/%2e%2e/%2e%2e/etc/passwd',
    ]) {
      const r = await fetch(gw.url + p);
      expect([400, 404]).toContain(r.status);
      expect(await r.text()).not.toContain('"name": "proxyxai"');
    }
  });
});

async function rootKey(): Promise<string> {
  const { ROOT_KEY } = await import('../support/gateway.js');
  return ROOT_KEY;
}
