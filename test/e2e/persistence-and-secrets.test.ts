// End-to-end: the pool survives restarts encrypted at rest; no upstream key leaks anywhere.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { startGateway, call, removeDir, ROOT_KEY, type TestGateway } from '../support/gateway.js';

let mock: MockUpstream | undefined;
let gw: TestGateway | undefined;
afterEach(async () => {
  await gw?.stop();
  await mock?.close();
  if (gw !== undefined) removeDir(gw.dataDir);
  gw = undefined;
  mock = undefined;
});

function dataBytes(dir: string): string {
  return readdirSync(dir)
    .map((f) => readFileSync(join(dir, f)).toString('latin1'))
    .join('\n');
}

describe('persistence', () => {
  it('keeps the pool across a restart, encrypted: the raw key is absent from the database files', async () => {
    mock = await startMockUpstream();
    const secret = 'sk-proj-PERSISTED0key0material0abcdef123456';
    gw = await startGateway({ OPENAI_API_BASE: mock.url });
    expect((await call(gw, '/x-keys', { body: { SecretKey: secret } })).status).toBe(200);
    await gw.stop();
    const bytes = dataBytes(gw.dataDir);
    expect(bytes).not.toContain(secret);
    expect(bytes).not.toContain('PERSISTED0key0material');
    expect(bytes).not.toContain(ROOT_KEY);
    gw = await gw.restart();
    const r = await gw
      .client()
      .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] });
    expect(r.object).toBe('chat.completion');
    expect(mock.requests.at(-1)?.key).toBe(secret);
  });

  it('generates MASTER_KEY into DATA_DIR with mode 0600 when it is not set, and warns', async () => {
    mock = await startMockUpstream();
    gw = await startGateway({ OPENAI_API_BASE: mock.url });
    const file = join(gw.dataDir, 'master.key');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(gw.logs.some((l) => l.includes('MASTER_KEY is not set'))).toBe(true);
  });

  it('refuses to read the pool with a different MASTER_KEY rather than sending garbage', async () => {
    mock = await startMockUpstream();
    gw = await startGateway({
      OPENAI_API_BASE: mock.url,
      MASTER_KEY: 'a'.repeat(64),
      INIT_KEYS: 'sk-upstream-master-0000000000000001',
    });
    await gw.stop();
    await expect(gw.restart({ MASTER_KEY: 'b'.repeat(64) })).rejects.toThrow();
  });
});

describe('no upstream key leaks', () => {
  it('a canary key never appears in logs, responses or GET /x-keys', async () => {
    mock = await startMockUpstream();
    const canary = 'sk-CANARY0000secret0material0zyxwvu98765';
    const good = 'sk-upstream-good-0000000000000000001';
    gw = await startGateway({
      OPENAI_API_BASE: mock.url,
      INIT_KEYS: `${canary},${good}`,
      LOG_LEVEL: 'debug',
    });
    // The canary is rejected upstream with a message that echoes its prefix and suffix, like OpenAI does.
    mock.setKey(canary, { kind: 'invalid-key' });
    const bodies: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await call(gw, '/v1/chat/completions', {
        body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
      });
      bodies.push(JSON.stringify([...r.headers]) + (await r.text()));
    }
    // With only the canary left, its error reaches the client: it must be sanitised.
    mock.setKey(good, { kind: 'invalid-key' });
    const keys = await (await call(gw, '/x-keys')).json();
    for (const id of (keys as Array<{ ID: number }>).map((k) => k.ID))
      await call(gw, `/x-keys/${id}`, { method: 'PUT', body: { Status: true } });
    mock.setKey(good, {
      kind: 'status',
      status: 401,
      body: {
        error: {
          message: `Incorrect API key provided: ${canary.slice(0, 8)}****${canary.slice(-4)}`,
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_api_key',
        },
      },
    });
    const r2 = await call(gw, '/v1/chat/completions', {
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
    });
    bodies.push(await r2.text());
    mock.setDefault({
      kind: 'status',
      status: 500,
      body: { error: { message: `boom for key ${canary}`, type: 'server_error', param: null, code: null } },
    });
    mock.setKey(good, {
      kind: 'status',
      status: 500,
      body: { error: { message: `boom for key ${canary}`, type: 'server_error', param: null, code: null } },
    });
    for (const id of (keys as Array<{ ID: number }>).map((k) => k.ID))
      await call(gw, `/x-keys/${id}`, { method: 'PUT', body: { Status: true } });
    const r3 = await call(gw, '/v1/chat/completions', {
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
    });
    expect(r3.status).toBe(500);
    bodies.push(await r3.text());
    bodies.push(JSON.stringify(await (await call(gw, '/x-keys')).json()));
    bodies.push(await (await fetch(`${gw.url}/metrics`)).text());
    await gw.stop();
    const everything = [...bodies, ...gw.logs].join('\n');
    for (const fragment of [canary, canary.slice(3, 12), canary.slice(-12), 'CANARY0000']) {
      expect(everything).not.toContain(fragment);
    }
    expect(dataBytes(gw.dataDir)).not.toContain('CANARY0000');
  });
});
