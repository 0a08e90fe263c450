// End-to-end: realtime upgrades the gateway refuses before any 101 (plain HTTP with OpenAI's error
// body, nothing sent upstream), and upstream handshakes that fail over to another pool key.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createChild, updateChild } from '../support/accounts.js';
import { ROOT_KEY, startGateway, type TestGateway } from '../support/gateway.js';
import {
  attachMockRealtime,
  openRealtime,
  refusedUpgrade,
  type MockRealtime,
} from '../support/mock-realtime.js';
import { startMockUpstream, waitFor, type MockUpstream } from '../support/mock-upstream.js';

const K1 = 'sk-upstream-rt-refuse-aaaaaaaaaaaa0001';
const K2 = 'sk-upstream-rt-refuse-bbbbbbbbbbbb0002';
let mock: MockUpstream;
let rt: MockRealtime;
let gw: TestGateway;

beforeAll(async () => {
  mock = await startMockUpstream();
  rt = attachMockRealtime(mock);
  gw = await startGateway({ OPENAI_API_BASE: mock.url, INIT_KEYS: `${K1},${K2}` });
});
afterAll(async () => {
  await gw.stop();
  rt.close();
  await mock.close();
  // No upstream key ever reached a log line.
  expect(gw.logs.join('\n')).not.toContain(K1);
  expect(gw.logs.join('\n')).not.toContain(K2);
});
beforeEach(async () => {
  rt.reset();
  // Every key healthy again, whatever the previous test did to it.
  for (const k of gw.app.pool.list()) await gw.app.pool.setEnabled(k.id, true);
});

function keyStatus(last4: string): string | undefined {
  return gw.app.pool.list().find((k) => k.masked.endsWith(last4))?.status;
}

async function closeAndSettle(c: Awaited<ReturnType<typeof openRealtime>>): Promise<void> {
  c.socket.close();
  await waitFor(() => gw.app.realtime.stats().sessions === 0);
}

describe('refused before the upgrade', () => {
  const cases: Array<{
    name: string;
    setup: () => Promise<{ key?: string; path?: string; protocols?: string[] }>;
    status: number;
    code: string;
    param?: string;
  }> = [
    {
      name: 'another path',
      setup: () => Promise.resolve({ key: ROOT_KEY, path: '/v1/chat/completions' }),
      status: 404,
      code: 'not_found',
    },
    { name: 'no key', setup: () => Promise.resolve({}), status: 401, code: 'invalid_api_key' },
    {
      name: 'an unknown key',
      setup: () => Promise.resolve({ key: `sk-Xvs${'x'.repeat(45)}` }),
      status: 401,
      code: 'invalid_api_key',
    },
    {
      name: 'an unknown key in the subprotocol',
      setup: () =>
        Promise.resolve({ protocols: ['realtime', `openai-insecure-api-key.sk-Xvs${'y'.repeat(45)}`] }),
      status: 401,
      code: 'invalid_api_key',
    },
    {
      name: 'a disabled account',
      setup: async () => {
        const key = await createChild(gw, 'rf-disabled', 10);
        await updateChild(gw, 'rf-disabled', { Status: false });
        return { key };
      },
      status: 401,
      code: 'account_deactivated',
    },
    {
      name: 'an IP outside the allow-list',
      setup: async () => {
        const key = await createChild(gw, 'rf-ip', 10);
        await updateChild(gw, 'rf-ip', { AllowIPs: ['10.9.8.7'] });
        return { key };
      },
      status: 403,
      code: 'ip_not_allowed',
    },
    {
      name: 'a model outside the allow-list',
      setup: async () => {
        const key = await createChild(gw, 'rf-model', 10);
        await updateChild(gw, 'rf-model', { AllowModels: ['gpt-4o-mini'] });
        return { key };
      },
      status: 403,
      code: 'model_not_allowed',
    },
    {
      name: 'a balance below $1',
      setup: async () => {
        const key = await createChild(gw, 'rf-poor', 2);
        await updateChild(gw, 'rf-poor', { CreditGranted: -1.5 });
        return { key };
      },
      status: 402,
      code: 'insufficient_quota',
    },
    {
      name: 'the monthly HardLimit reached',
      setup: async () => {
        const key = await createChild(gw, 'rf-hard', 10);
        await updateChild(gw, 'rf-hard', { HardLimit: 0, SoftLimit: 0 });
        return { key };
      },
      status: 402,
      code: 'insufficient_quota',
    },
    {
      name: 'a model without a price',
      setup: () => Promise.resolve({ key: ROOT_KEY, path: '/v1/realtime?model=no-such-realtime-model' }),
      status: 400,
      code: 'model_not_priced',
      param: 'model',
    },
    {
      name: 'no model',
      setup: () => Promise.resolve({ key: ROOT_KEY, path: '/v1/realtime' }),
      status: 400,
      code: 'invalid_value',
      param: 'model',
    },
    {
      name: 'a call_id (sideband) connection',
      setup: () => Promise.resolve({ key: ROOT_KEY, path: '/v1/realtime?call_id=rtc_123' }),
      status: 400,
      code: 'invalid_value',
      param: 'call_id',
    },
  ];

  it.each(cases)('answers $name with $status $code and sends nothing upstream', async (c) => {
    const { key, path, protocols } = await c.setup();
    const r = await refusedUpgrade(gw.url, {
      ...(key !== undefined && { key }),
      ...(path !== undefined && { path }),
      ...(protocols !== undefined && { protocols }),
    });
    expect(r.status).toBe(c.status);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    expect(r.body['error']).toMatchObject({ code: c.code, param: c.param ?? null });
    expect(typeof (r.body['error'] as Record<string, unknown>)['message']).toBe('string');
    expect(rt.handshakes).toHaveLength(0);
  });

  it('answers a rate-limited account 429 with Retry-After, counting the session once', async () => {
    const key = await createChild(gw, 'rf-rpm', 10);
    await updateChild(gw, 'rf-rpm', { RateLimit: 1 });
    const first = await openRealtime(gw.url, { key });
    await first.next('session.created');
    // A session is one request, however many responses it runs.
    first.send({ type: 'response.create' });
    await first.next('response.done');
    const r = await refusedUpgrade(gw.url, { key });
    expect(r.status).toBe(429);
    expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
    expect(r.body['error']).toMatchObject({ code: 'rate_limit_exceeded' });
    expect(rt.handshakes).toHaveLength(1);
    await closeAndSettle(first);
  });

  it('answers 503 no_upstream_key when the pool has no usable key', async () => {
    const empty = await startGateway({ OPENAI_API_BASE: mock.url });
    try {
      const r = await refusedUpgrade(empty.url, { key: ROOT_KEY });
      expect(r.status).toBe(503);
      expect(r.body['error']).toMatchObject({ code: 'no_upstream_key' });
      expect(rt.handshakes).toHaveLength(0);
    } finally {
      await empty.stop();
    }
  });
});

describe('upstream handshakes', () => {
  it('moves to another key after a 401 and retires the rejected key', async () => {
    rt.setKey(K1, { kind: 'invalid-key' });
    // Two sessions: round robin makes at least one of them try K1 first.
    for (let i = 0; i < 2; i++) {
      const c = await openRealtime(gw.url, { key: ROOT_KEY });
      await c.next('session.created');
      await closeAndSettle(c);
    }
    expect(rt.handshakes.filter((h) => h.key === K1)).toHaveLength(1);
    expect(rt.sessions.map((s) => s.key)).toEqual([K2, K2]);
    expect(keyStatus('0001')).toBe('disabled');
  });

  it('moves to another key after a 500 and a dropped connection, without retiring them', async () => {
    for (const failure of [{ kind: 'error500' }, { kind: 'drop' }] as const) {
      rt.reset();
      rt.setKey(K1, failure);
      for (let i = 0; i < 2; i++) {
        const c = await openRealtime(gw.url, { key: ROOT_KEY });
        await c.next('session.created');
        await closeAndSettle(c);
      }
      expect(rt.handshakes.some((h) => h.key === K1)).toBe(true);
      expect(rt.sessions.every((s) => s.key === K2)).toBe(true);
      // One or two transient failures: not enough to eject the key (that takes three in a row).
      expect(keyStatus('0001')).toBe('active');
      for (const k of gw.app.pool.list()) await gw.app.pool.setEnabled(k.id, true);
    }
  });

  it('cools a key answered 429 and uses the other one', async () => {
    rt.setKey(K2, { kind: 'rate-limited', retryAfterSec: 30 });
    for (let i = 0; i < 2; i++) {
      const c = await openRealtime(gw.url, { key: ROOT_KEY });
      await c.next('session.created');
      await closeAndSettle(c);
    }
    expect(rt.sessions.every((s) => s.key === K1)).toBe(true);
    expect(keyStatus('0002')).toBe('cooling');
  });

  it('passes upstream 400 (an unknown model) to the client, without trying another key', async () => {
    rt.setDefault({
      kind: 'status',
      status: 400,
      body: {
        error: {
          message: 'Invalid model for sk-abcd...wxyz',
          type: 'invalid_request_error',
          param: null,
          code: 'model_not_found',
        },
      },
    });
    const r = await refusedUpgrade(gw.url, { key: ROOT_KEY });
    expect(r.status).toBe(400);
    expect(r.body['error']).toMatchObject({ code: 'model_not_found' });
    expect(JSON.stringify(r.body)).not.toContain('sk-abcd');
    expect(rt.handshakes).toHaveLength(1);
  });

  it('answers the last failure when every key fails: 500 from upstream, 502 when unreachable', async () => {
    rt.setDefault({ kind: 'error500' });
    const r500 = await refusedUpgrade(gw.url, { key: ROOT_KEY });
    expect(r500.status).toBe(500);
    expect(r500.body['error']).toMatchObject({ type: 'server_error' });
    expect(rt.handshakes).toHaveLength(2);
    rt.reset();
    rt.setDefault({ kind: 'drop' });
    const r502 = await refusedUpgrade(gw.url, { key: ROOT_KEY });
    expect(r502.status).toBe(502);
    expect(r502.body['error']).toMatchObject({ code: 'upstream_unreachable' });
  });

  it('answers 503 no_upstream_key when every key is rejected as invalid', async () => {
    rt.setDefault({ kind: 'invalid-key' });
    const r = await refusedUpgrade(gw.url, { key: ROOT_KEY });
    expect(r.status).toBe(503);
    expect(r.body['error']).toMatchObject({ code: 'no_upstream_key' });
    expect(JSON.stringify(r.body)).not.toContain('sk-upstream');
  });

  it('never switches keys once the session runs: an upstream close ends the session', async () => {
    const c = await openRealtime(gw.url, { key: ROOT_KEY });
    await c.next('session.created');
    (await rt.session(1)).close(1011, 'upstream broke');
    const closed = await c.closed;
    expect(closed).toEqual({ code: 1011, reason: 'upstream broke' });
    expect(rt.handshakes).toHaveLength(1);
  });
});
