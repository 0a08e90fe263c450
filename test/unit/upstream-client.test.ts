// The upstream client against a real node:http server on loopback: the body arrives as callbacks
// (held until a sink attaches), back-pressure really stops upstream, and cancellation and destroy
// really abort the upstream request.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cancel } from '../../src/upstream/cancel.js';
import type { UpstreamBody } from '../../src/upstream/upstream-body.js';
import {
  UpstreamClient,
  type AttemptResult,
  type UpstreamRequest,
} from '../../src/upstream/upstream-client.js';

type Route = (req: IncomingMessage, res: ServerResponse) => void;

const routes = new Map<string, Route>();
const aborted: string[] = [];
let server: Server;
let client: UpstreamClient;

beforeAll(async () => {
  server = createServer((req, res) => {
    const path = req.url ?? '/';
    res.on('close', () => {
      if (!res.writableFinished) aborted.push(path);
    });
    const route = routes.get(path);
    if (route === undefined) {
      res.writeHead(404).end();
      return;
    }
    route(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  client = new UpstreamClient(`http://127.0.0.1:${port}`, '/base', {
    connectTimeoutMs: 2_000,
    idleTimeoutMs: 10_000,
    connections: 0,
  });
});

afterAll(async () => {
  await client.destroy();
  await new Promise((r) => server.close(r));
});

function send(path: string, cancel = new Cancel(), headersTimeoutMs = 5_000): Promise<AttemptResult> {
  const req: UpstreamRequest = {
    method: 'POST',
    path,
    headers: { 'content-type': 'application/json' },
    body: Buffer.from('{}'),
    cancel,
    headersTimeoutMs,
  };
  return client.send(req);
}

function readAll(body: UpstreamBody): Promise<{ data: Buffer; error: Error | undefined }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    body.attach({
      onData: (c) => chunks.push(c),
      onEnd: () => resolve({ data: Buffer.concat(chunks), error: undefined }),
      onError: (error) => resolve({ data: Buffer.concat(chunks), error }),
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('UpstreamClient', () => {
  it('prefixes the base path and returns status, headers and the whole body', async () => {
    routes.set('/base/v1/echo', (req, res) => {
      res.writeHead(201, { 'content-type': 'application/json', 'x-seen-path': req.url ?? '' });
      res.end('{"ok":true}');
    });
    const r = await send('/v1/echo');
    if (r.kind !== 'response') throw new Error(`expected a response, got ${r.kind}`);
    expect(r.response.statusCode).toBe(201);
    expect(r.response.headers['x-seen-path']).toBe('/base/v1/echo');
    expect((await readAll(r.response.body)).data.toString()).toBe('{"ok":true}');
  });

  it('holds chunks that arrive before a sink is attached and replays them in order', async () => {
    routes.set('/base/v1/early', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('one,');
      res.write('two,');
      res.end('three');
    });
    const r = await send('/v1/early');
    if (r.kind !== 'response') throw new Error('expected a response');
    await sleep(50); // the whole body has arrived by now, with nobody listening
    const got = await readAll(r.response.body);
    expect(got.error).toBeUndefined();
    expect(got.data.toString()).toBe('one,two,three');
  });

  it('pause() stops reading from upstream until resume()', async () => {
    const total = 32 * 1024 * 1024;
    let serverBlocked = false;
    let serverWrote = 0;
    routes.set('/base/v1/big', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
      const chunk = Buffer.alloc(64 * 1024, 7);
      const pump = (): void => {
        while (serverWrote < total) {
          serverWrote += chunk.length;
          if (!res.write(chunk)) {
            serverBlocked = true;
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    });
    const r = await send('/v1/big');
    if (r.kind !== 'response') throw new Error('expected a response');
    const body = r.response.body;
    let received = 0;
    const done = new Promise<void>((resolve, reject) => {
      body.attach({
        onData: (c) => {
          received += c.length;
          body.pause();
        },
        onEnd: resolve,
        onError: reject,
      });
    });
    await sleep(300);
    // Paused after the first chunk: the server is stuck on a full socket, far from the end.
    expect(serverBlocked).toBe(true);
    expect(received).toBeLessThan(total / 4);
    const wroteWhilePaused = serverWrote;
    await sleep(200);
    expect(serverWrote).toBe(wroteWhilePaused);
    // Resume on every chunk from now on.
    const interval = setInterval(() => body.resume(), 1);
    await done;
    clearInterval(interval);
    expect(received).toBe(total);
  });

  it('a cancel while waiting for the response head aborts the upstream request', async () => {
    routes.set('/base/v1/hang', () => undefined);
    const cancel = new Cancel();
    const pending = send('/v1/hang', cancel);
    await sleep(100);
    cancel.abort();
    const r = await pending;
    expect(r).toMatchObject({ kind: 'network-error', aborted: true });
    await sleep(100);
    expect(aborted).toContain('/base/v1/hang');
  });

  it('destroy() in the middle of a body aborts the upstream request', async () => {
    routes.set('/base/v1/endless', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const timer = setInterval(() => res.write('data: x\n\n'), 5);
      res.on('close', () => clearInterval(timer));
    });
    const r = await send('/v1/endless');
    if (r.kind !== 'response') throw new Error('expected a response');
    let chunks = 0;
    await new Promise<void>((resolve) => {
      r.response.body.attach({
        onData: () => {
          if (++chunks === 3) {
            r.response.body.destroy();
            resolve();
          }
        },
        onEnd: () => undefined,
        onError: () => undefined,
      });
    });
    await sleep(100);
    expect(aborted).toContain('/base/v1/endless');
  });

  it('reports a headers timeout as a timed-out network error', async () => {
    // undici checks header timeouts on a coarse (≈ 0.5–1 s) timer, hence the wide margin.
    routes.set('/base/v1/slow-head', (_req, res) => {
      const timer = setTimeout(() => res.writeHead(200).end('late'), 4_000);
      res.on('close', () => clearTimeout(timer));
    });
    const r = await send('/v1/slow-head', new Cancel(), 200);
    expect(r).toMatchObject({ kind: 'network-error', timeout: true, aborted: false });
  });

  it('reports a late head as a timed-out network error when the watchdog checks it (over a second)', async () => {
    routes.set('/base/v1/slower-head', (_req, res) => {
      const timer = setTimeout(() => res.writeHead(200).end('late'), 5_000);
      res.on('close', () => clearTimeout(timer));
    });
    const t0 = performance.now();
    const r = await send('/v1/slower-head', new Cancel(), 1_200);
    const waited = performance.now() - t0;
    expect(r).toMatchObject({ kind: 'network-error', timeout: true, aborted: false });
    if (r.kind === 'network-error') expect(r.reason).toContain('UND_ERR_HEADERS_TIMEOUT');
    expect(waited).toBeGreaterThanOrEqual(1_150);
    expect(waited).toBeLessThan(2_500);
    await sleep(50);
    expect(aborted).toContain('/base/v1/slower-head');
  });

  describe('silence inside a body', () => {
    let quick: UpstreamClient;
    beforeAll(() => {
      const port = (server.address() as AddressInfo).port;
      quick = new UpstreamClient(`http://127.0.0.1:${port}`, '/base', {
        connectTimeoutMs: 2_000,
        idleTimeoutMs: 400,
        connections: 0,
      });
    });
    afterAll(() => quick.destroy());
    const sendQuick = (path: string): Promise<AttemptResult> =>
      quick.send({
        method: 'POST',
        path,
        headers: { 'content-type': 'application/json' },
        body: Buffer.from('{}'),
        cancel: new Cancel(),
        headersTimeoutMs: 5_000,
      });

    it('fails the body with a body timeout when upstream goes silent longer than the idle timeout', async () => {
      routes.set('/base/v1/goes-silent', (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: one\n\n');
        const timer = setTimeout(() => res.end('data: too late\n\n'), 5_000);
        res.on('close', () => clearTimeout(timer));
      });
      const t0 = performance.now();
      const r = await sendQuick('/v1/goes-silent');
      if (r.kind !== 'response') throw new Error('expected a response');
      const { data, error } = await readAll(r.response.body);
      const waited = performance.now() - t0;
      expect(data.toString()).toBe('data: one\n\n');
      expect(error).toMatchObject({ name: 'BodyTimeoutError', code: 'UND_ERR_BODY_TIMEOUT' });
      expect(waited).toBeGreaterThanOrEqual(390);
      expect(waited).toBeLessThan(2_000);
      await sleep(50);
      expect(aborted).toContain('/base/v1/goes-silent');
    });

    it('lets a body whose chunks come closer than the idle timeout run longer than it', async () => {
      routes.set('/base/v1/trickle', (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        let n = 0;
        const timer = setInterval(() => {
          if (++n === 12) {
            clearInterval(timer);
            res.end('data: [DONE]\n\n');
          } else res.write(`data: ${n}\n\n`);
        }, 150);
        res.on('close', () => clearInterval(timer));
      });
      const r = await sendQuick('/v1/trickle');
      if (r.kind !== 'response') throw new Error('expected a response');
      const { data, error } = await readAll(r.response.body);
      expect(error).toBeUndefined();
      expect(data.toString()).toContain('data: [DONE]');
    });

    it('does not count a pause of the gateway (back-pressure) as upstream silence', async () => {
      routes.set('/base/v1/paused', (_req, res) => {
        // The rest comes while the gateway is not reading: upstream is not silent, only unread.
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: 0\n\n');
        const t1 = setTimeout(() => res.write('data: 1\n\n'), 200);
        const t2 = setTimeout(() => res.end('data: [DONE]\n\n'), 400);
        res.on('close', () => {
          clearTimeout(t1);
          clearTimeout(t2);
        });
      });
      const r = await sendQuick('/v1/paused');
      if (r.kind !== 'response') throw new Error('expected a response');
      const body = r.response.body;
      const chunks: Buffer[] = [];
      const result = new Promise<Error | undefined>((resolve) => {
        let first = true;
        body.attach({
          onData: (c) => {
            chunks.push(c);
            if (first) {
              first = false;
              // Held three idle timeouts long, as a slow client would.
              body.pause();
              setTimeout(() => body.resume(), 1_200);
            }
          },
          onEnd: () => resolve(undefined),
          onError: resolve,
        });
      });
      expect(await result).toBeUndefined();
      expect(Buffer.concat(chunks).toString()).toContain('data: [DONE]');
    });
  });

  it('reports a refused connection as a network error, not a timeout', async () => {
    const dead = new UpstreamClient('http://127.0.0.1:9', '', {
      connectTimeoutMs: 1_000,
      idleTimeoutMs: 1_000,
      connections: 0,
    });
    try {
      const r = await dead.send({
        method: 'GET',
        path: '/v1/models',
        headers: {},
        body: undefined,
        cancel: new Cancel(),
        headersTimeoutMs: 1_000,
      });
      expect(r).toMatchObject({ kind: 'network-error', timeout: false, aborted: false });
      if (r.kind === 'network-error') expect(r.reason).toMatch(/ECONNREFUSED/);
    } finally {
      await dead.destroy();
    }
  });
});

describe('Cancel', () => {
  it('runs the current hook once, and a hook set after abort at once', () => {
    const c = new Cancel();
    const calls: string[] = [];
    c.onAbort(() => calls.push('first'));
    c.onAbort(() => calls.push('second')); // replaces the first
    c.abort();
    c.abort();
    c.onAbort(() => calls.push('late'));
    expect(calls).toEqual(['second', 'late']);
    expect(c.aborted).toBe(true);
  });
});
