// End-to-end: the OpenAI surface through the gateway with the official SDK, against the mock upstream.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { toFile } from 'openai';
import { startMockUpstream, mockSpeechBytes, type MockUpstream } from '../support/mock-upstream.js';
import { request } from 'node:http';
import { startGateway, call, removeDir, ROOT_KEY, type TestGateway } from '../support/gateway.js';

const K1 = 'sk-upstream-core-aaaaaaaaaaaaaaaa0001';
const K2 = 'sk-upstream-core-bbbbbbbbbbbbbbbb0002';
let mock: MockUpstream;
let gw: TestGateway;

beforeAll(async () => {
  mock = await startMockUpstream();
  gw = await startGateway({ OPENAI_API_BASE: mock.url, INIT_KEYS: `${K1},${K2}` });
});
afterAll(async () => {
  await gw.stop();
  await mock.close();
});
beforeEach(() => mock.reset());

describe('OpenAI surface through the SDK', () => {
  it('answers chat completions with usage', async () => {
    const r = await gw.client().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hello there' }],
    });
    expect(r.object).toBe('chat.completion');
    expect(r.usage?.total_tokens).toBeGreaterThan(0);
    expect(mock.requests).toHaveLength(1);
    expect([K1, K2]).toContain(mock.requests[0]?.key);
  });

  it('streams chat completions chunk by chunk and strips the usage chunk it asked for', async () => {
    mock.setStream({ chunks: 8, content: 'one two three four five six seven eight' });
    const stream = await gw.client().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'count' }],
      stream: true,
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text.split(/\s+/).filter(Boolean)).toHaveLength(8);
    expect(chunks.every((c) => c.choices.length > 0)).toBe(true);
    const sent = JSON.parse(mock.requests[0]?.body.toString() ?? '{}') as {
      stream_options?: { include_usage?: boolean };
    };
    expect(sent.stream_options?.include_usage).toBe(true);
  });

  it('keeps the usage chunk when the client asked for it', async () => {
    const stream = await gw.client().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'count' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let usage;
    for await (const c of stream) if (c.usage) usage = c.usage;
    expect(usage?.completion_tokens).toBeGreaterThan(0);
  });

  it('creates embeddings', async () => {
    const r = await gw.client().embeddings.create({ model: 'text-embedding-3-small', input: 'abc' });
    expect(r.data[0]?.embedding).toHaveLength(8);
  });

  it('uploads audio as multipart, byte for byte', async () => {
    const audio = Buffer.alloc(50_000, 7);
    const r = await gw
      .client()
      .audio.transcriptions.create({ model: 'whisper-1', file: await toFile(audio, 'clip.mp3') });
    expect(r.text).toContain('50000 bytes');
    expect(r.text).toContain('clip.mp3');
  });

  it('downloads binary speech unchanged', async () => {
    const r = await gw.client().audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'Hello world' });
    const bytes = Buffer.from(await r.arrayBuffer());
    expect(bytes.equals(mockSpeechBytes('Hello world'))).toBe(true);
  });

  it('relays a large body to a client that stops reading for a while, intact', async () => {
    const size = 8 * 1024 * 1024;
    const body = JSON.stringify({ model: 'tts-1', voice: 'alloy', input: 'big', x_mock_bytes: size });
    const got = await new Promise<Buffer>((resolve, reject) => {
      const u = new URL(`${gw.url}/v1/audio/speech`);
      const req = request(
        {
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          method: 'POST',
          headers: { authorization: `Bearer ${ROOT_KEY}`, 'content-type': 'application/json' },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.once('data', (c: Buffer) => {
            chunks.push(c);
            res.pause(); // a client that stops reading for a while
            setTimeout(() => {
              res.on('data', (d: Buffer) => chunks.push(d));
              res.resume();
            }, 300);
          });
          res.on('end', () => resolve(Buffer.concat(chunks)));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    expect(got.length).toBe(size);
    expect(got.equals(mockSpeechBytes('big', size))).toBe(true);
  });

  it('lists models', async () => {
    const page = await gw.client().models.list();
    expect(page.data.length).toBeGreaterThan(0);
  });

  it('refuses /v1 paths the endpoint table does not know, without reaching upstream (UNKNOWN_ENDPOINTS=refuse)', async () => {
    const before = mock.requests.length;
    const r = await call(gw, '/v1/some/new/thing?x=1');
    expect(r.status).toBe(403);
    const body = (await r.json()) as { error: { code: string; type: string; message: string } };
    expect(body.error).toMatchObject({ code: 'endpoint_not_allowed', type: 'permission_error' });
    expect(body.error.message).toContain('GET /v1/some/new/thing');
    expect(mock.requests.length).toBe(before);
  });

  it('forwards unknown /v1 paths with their query when UNKNOWN_ENDPOINTS=forward', async () => {
    const open = await startGateway({
      OPENAI_API_BASE: mock.url,
      INIT_KEYS: 'sk-upstream-core-forward',
      UNKNOWN_ENDPOINTS: 'forward',
    });
    try {
      const r = await call(open, '/v1/some/new/thing?x=1');
      expect(r.status).toBe(200);
      const body = (await r.json()) as { echo: { path: string; query: string } };
      expect(body.echo.path).toBe('/v1/some/new/thing');
      expect(body.echo.query).toBe('x=1');
    } finally {
      await open.stop();
      removeDir(open.dataDir);
    }
  });

  it('accepts the bare key form of Authorization on /v1', async () => {
    const r = await call(gw, '/v1/models', { raw: true });
    expect(r.status).toBe(200);
  });
});

describe('headers', () => {
  it('sends only allow-listed headers upstream, with the pool key', async () => {
    const r = await call(gw, '/v1/chat/completions', {
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
      headers: {
        cookie: 'session=secret',
        'x-forwarded-host': 'evil.example',
        forwarded: 'host=evil.example',
        'openai-organization': 'org-client',
        'openai-beta': 'assistants=v2',
      },
    });
    expect(r.status).toBe(200);
    const h = mock.requests[0]?.headers ?? {};
    expect(h['authorization']).toMatch(/^Bearer sk-upstream-core-/);
    expect(h['cookie']).toBeUndefined();
    expect(h['x-forwarded-host']).toBeUndefined();
    expect(h['forwarded']).toBeUndefined();
    expect(h['openai-organization']).toBeUndefined();
    expect(h['openai-beta']).toBe('assistants=v2');
    expect(h['host']).toBe(new URL(mock.url).host);
  });

  it('does not pass upstream organisation or rate-limit headers back', async () => {
    mock.setDefault({
      kind: 'status',
      status: 200,
      body: { ok: true },
      headers: {
        'openai-organization': 'org-secret',
        'x-ratelimit-remaining-tokens': '5',
        'set-cookie': 'a=b',
      },
    });
    const r = await call(gw, '/v1/embeddings', { body: { model: 'text-embedding-3-small', input: 'x' } });
    expect(r.status).toBe(200);
    expect(r.headers.get('openai-organization')).toBeNull();
    expect(r.headers.get('x-ratelimit-remaining-tokens')).toBeNull();
    expect(r.headers.get('set-cookie')).toBeNull();
    expect(r.headers.get('x-request-id')).toMatch(/^req_/);
  });
});

describe('operations', () => {
  it('reports liveness and readiness', async () => {
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${gw.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ store: true, upstream_keys: true });
  });

  it('exposes Prometheus metrics without keys', async () => {
    await gw.client().models.list();
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    expect(text).toContain('proxyxai_upstream_attempts_total');
    expect(text).not.toContain('sk-');
  });

  it('counts requests, attempts, charges and durations', async () => {
    const value = (text: string, series: string): number => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? 0 : Number(line.slice(series.length + 1));
    };
    const series = [
      'proxyxai_requests_total{kind="completed",status="200"}',
      'proxyxai_upstream_attempts_total{outcome="ok"}',
      'proxyxai_request_duration_seconds_count{kind="completed"}',
      'proxyxai_request_duration_seconds_bucket{kind="completed",le="+Inf"}',
      'proxyxai_request_duration_seconds_bucket{kind="completed",le="120"}',
    ];
    const before = await (await fetch(`${gw.url}/metrics`)).text();
    for (let i = 0; i < 3; i++) {
      await gw
        .client()
        .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    }
    const after = await (await fetch(`${gw.url}/metrics`)).text();
    for (const s of series) expect(value(after, s) - value(before, s)).toBe(3);
    const sum = 'proxyxai_request_duration_seconds_sum{kind="completed"}';
    expect(value(after, sum)).toBeGreaterThan(value(before, sum));
    expect(after).toContain('# TYPE proxyxai_request_duration_seconds histogram');
    expect(value(after, 'proxyxai_charged_micros_total')).toBeGreaterThan(
      value(before, 'proxyxai_charged_micros_total'),
    );
  });
});
