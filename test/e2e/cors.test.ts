// End-to-end: CORS for pages hosted on other hosts of the same site, never with credentials.
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, ROOT_KEY, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
let open: TestGateway;
beforeAll(async () => {
  gw = await startGateway({ CORS_ORIGINS: 'https://panel.partner.example' });
  open = await startGateway({ CORS_ORIGINS: '*' });
});
afterAll(async () => {
  await gw.stop();
  await open.stop();
});

type Answer = { status: number; headers: Record<string, string | string[] | undefined> };

/** node:http, because fetch does not let a caller choose the Host header. */
function send(target: TestGateway, method: string, headers: Record<string, string>): Promise<Answer> {
  const u = new URL(target.url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, path: '/dashboard/x_user/info', method, headers },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function preflight(target: TestGateway, origin: string): Promise<Answer> {
  return send(target, 'OPTIONS', {
    origin,
    host: 'api.example.com',
    'access-control-request-method': 'GET',
    'access-control-request-headers': 'authorization',
  });
}

describe('CORS', () => {
  it('answers preflights from pages on the same site (usage.example.com → api.example.com)', async () => {
    const r = await preflight(gw, 'https://usage.example.com');
    expect(r.status).toBe(204);
    expect(r.headers['access-control-allow-origin']).toBe('https://usage.example.com');
    expect(r.headers['access-control-allow-headers']).toContain('authorization');
    expect(r.headers['access-control-allow-credentials']).toBeUndefined();
  });

  it('allows configured CORS_ORIGINS and refuses other sites', async () => {
    expect((await preflight(gw, 'https://panel.partner.example')).status).toBe(204);
    const r = await preflight(gw, 'https://evil.example.net');
    expect(r.status).toBe(403);
    expect(r.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('adds the allow-origin header to real responses, and "*" allows any origin', async () => {
    const r = await send(gw, 'GET', {
      origin: 'https://sub.example.com',
      host: 'api.example.com',
      authorization: `Bearer ${ROOT_KEY}`,
    });
    expect(r.status).toBe(200);
    expect(r.headers['access-control-allow-origin']).toBe('https://sub.example.com');
    const any = await preflight(open, 'https://anywhere.example.org');
    expect(any.status).toBe(204);
    expect(any.headers['access-control-allow-origin']).toBe('*');
  });
});
