/**
 * Unit tests for the static page server (`src/http/static-files.ts`): content types, redirects, index
 * files, no directory listings, path traversal (raw, encoded, NUL, backslash), conditional requests,
 * HEAD and in-memory overrides. A real node:http server on 127.0.0.1:0 serves a temporary directory.
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStaticFiles } from '../../src/http/static-files.js';

const SECRET = 'TOP-SECRET-OUTSIDE-ROOT';

let tmp: string;
let server: Server;
let base: string;

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** Sends a request with the path exactly as given (fetch would normalise `..` away). */
function raw(method: string, rawPath: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path: rawPath, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'static-files-'));
  const root = path.join(tmp, 'pages');
  await mkdir(path.join(root, 'billing'), { recursive: true });
  await mkdir(path.join(root, 'empty'), { recursive: true });
  await mkdir(path.join(root, 'docs', 'assets'), { recursive: true });
  await writeFile(path.join(tmp, 'package.json'), JSON.stringify({ secret: SECRET }));
  await writeFile(path.join(tmp, 'pages-secret.txt'), SECRET);
  await writeFile(path.join(root, 'billing', 'index.html'), '<!doctype html><title>Billing</title>');
  await writeFile(path.join(root, 'billing', 'style.css'), 'body{color:red}');
  await writeFile(path.join(root, 'billing', 'app.js'), 'console.log(1);');
  await writeFile(path.join(root, 'billing', 'config.js'), 'window.PROXYXAI_CONFIG = { apiBase: null };');
  await writeFile(path.join(root, 'billing', '.env'), SECRET);
  await writeFile(path.join(root, 'docs', 'assets', 'data.json'), '{"a":1}');
  await writeFile(path.join(root, 'docs', 'assets', 'logo.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
  await writeFile(path.join(root, 'docs', 'assets', 'pic.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47]));
  await writeFile(path.join(root, 'docs', 'assets', 'favicon.ico'), Buffer.from([0, 0, 1, 0]));
  await writeFile(path.join(root, 'docs', 'assets', 'notes.txt'), 'hello');
  await writeFile(path.join(root, 'docs', 'assets', 'font.woff2'), Buffer.from([0x77, 0x4f, 0x46, 0x32]));
  await writeFile(path.join(root, 'docs', 'assets', 'blob.bin'), Buffer.from([1, 2, 3]));
  await symlink(path.join(tmp, 'pages-secret.txt'), path.join(root, 'docs', 'assets', 'link.txt'));

  const statics = createStaticFiles({
    root,
    overrides: {
      '/billing/config.js': {
        body: 'window.PROXYXAI_CONFIG = { apiBase: "" };',
        contentType: 'text/javascript; charset=utf-8',
      },
      '/virtual.txt': { body: 'only in memory', contentType: 'text/plain; charset=utf-8' },
    },
  });
  server = createServer((req, res) => {
    const pathname = (req.url ?? '/').split('?')[0] ?? '/';
    statics.handle(req, res, pathname).then(
      (answered) => {
        if (!answered) {
          res.writeHead(404, { 'Content-Type': 'application/json' });
          res.end('{"error":{"message":"not found"}}');
        }
      },
      () => {
        res.writeHead(500);
        res.end();
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(tmp, { recursive: true, force: true });
});

describe('static files', () => {
  it('serves files with the right content type, cache policy and nosniff', async () => {
    const cases: Array<[string, string, string]> = [
      ['/billing/index.html', 'text/html; charset=utf-8', 'no-cache'],
      ['/billing/style.css', 'text/css; charset=utf-8', 'public, max-age=3600'],
      ['/billing/app.js', 'text/javascript; charset=utf-8', 'public, max-age=3600'],
      ['/docs/assets/data.json', 'application/json; charset=utf-8', 'public, max-age=3600'],
      ['/docs/assets/logo.svg', 'image/svg+xml; charset=utf-8', 'public, max-age=3600'],
      ['/docs/assets/pic.png', 'image/png', 'public, max-age=3600'],
      ['/docs/assets/favicon.ico', 'image/x-icon', 'public, max-age=3600'],
      ['/docs/assets/notes.txt', 'text/plain; charset=utf-8', 'public, max-age=3600'],
      ['/docs/assets/font.woff2', 'font/woff2', 'public, max-age=3600'],
      ['/docs/assets/blob.bin', 'application/octet-stream', 'public, max-age=3600'],
    ];
    for (const [p, type, cache] of cases) {
      const res = await fetch(base + p);
      expect(res.status, p).toBe(200);
      expect(res.headers.get('content-type'), p).toBe(type);
      expect(res.headers.get('cache-control'), p).toBe(cache);
      expect(res.headers.get('x-content-type-options'), p).toBe('nosniff');
      expect(res.headers.get('etag'), p).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
      await res.arrayBuffer();
    }
    const css = await fetch(`${base}/billing/style.css`);
    expect(await css.text()).toBe('body{color:red}');
  });

  it('redirects a directory without trailing slash, keeping the query', async () => {
    const res = await fetch(`${base}/billing?api=http%3A%2F%2Fx`, { redirect: 'manual' });
    expect(res.status).toBe(301);
    expect(res.headers.get('location')).toBe('/billing/?api=http%3A%2F%2Fx');
  });

  it('serves index.html for a directory with trailing slash', async () => {
    const res = await fetch(`${base}/billing/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expect(await res.text()).toContain('<title>Billing</title>');
  });

  it('never lists a directory', async () => {
    const res = await fetch(`${base}/empty/`);
    expect(res.status).toBe(404);
    expect(await res.text()).not.toContain('index');
    const rootRes = await fetch(`${base}/`);
    expect(rootRes.status).toBe(404);
    expect(await rootRes.text()).not.toContain('billing');
  });

  it('answers missing files with not found', async () => {
    expect((await fetch(`${base}/billing/nope.js`)).status).toBe(404);
    expect((await fetch(`${base}/billing/style.css/`)).status).toBe(404);
  });

  it('rejects path traversal and never reads outside the root', async () => {
    const attempts = [
      '/../package.json',
      '/%2e%2e/package.json',
      '/%2E%2E/package.json',
      '/billing/../../package.json',
      '/billing/..%2f..%2fpackage.json',
      '/billing/%2e%2e%2f%2e%2e%2fpackage.json',
      '/billing/..%5c..%5cpackage.json',
      '/billing/..\\..\\package.json',
      '/billing/index.html%00.txt',
      '/billing/%00',
      '/billing/%zz',
      '//package.json',
      '/billing/.env',
      '/docs/assets/link.txt',
      '/../pages-secret.txt',
    ];
    for (const attempt of attempts) {
      const res = await raw('GET', attempt);
      expect([400, 404], attempt).toContain(res.status);
      expect(res.body, attempt).not.toContain(SECRET);
    }
  });

  it('answers 304 when If-None-Match matches the ETag', async () => {
    const first = await fetch(`${base}/billing/app.js`);
    const etag = first.headers.get('etag');
    expect(etag).toBeTruthy();
    await first.text();
    const second = await fetch(`${base}/billing/app.js`, { headers: { 'If-None-Match': etag ?? '' } });
    expect(second.status).toBe(304);
    expect(second.headers.get('etag')).toBe(etag);
    expect(await second.text()).toBe('');
    const weak = await fetch(`${base}/billing/app.js`, { headers: { 'If-None-Match': `W/${etag ?? ''}` } });
    expect(weak.status).toBe(304);
    const other = await fetch(`${base}/billing/app.js`, { headers: { 'If-None-Match': '"nope"' } });
    expect(other.status).toBe(200);
    expect(await other.text()).toBe('console.log(1);');
  });

  it('picks up changed files (cache revalidated by size and mtime)', async () => {
    const file = path.join(tmp, 'pages', 'docs', 'assets', 'notes.txt');
    expect(await (await fetch(`${base}/docs/assets/notes.txt`)).text()).toBe('hello');
    await writeFile(file, 'hello, world');
    expect(await (await fetch(`${base}/docs/assets/notes.txt`)).text()).toBe('hello, world');
  });

  it('answers HEAD with headers and no body', async () => {
    const res = await raw('HEAD', '/billing/style.css');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/css; charset=utf-8');
    expect(res.headers['content-length']).toBe(String('body{color:red}'.length));
    expect(res.body).toBe('');
  });

  it('leaves other methods to the caller', async () => {
    const res = await fetch(`${base}/billing/style.css`, { method: 'POST', body: 'x' });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toBe('application/json');
    await res.text();
  });

  it('serves overrides from memory, with revalidation for config.js', async () => {
    const res = await fetch(`${base}/billing/config.js`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('window.PROXYXAI_CONFIG = { apiBase: "" };');
    expect(res.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    const etag = res.headers.get('etag') ?? '';
    expect(etag).not.toBe('');
    const again = await fetch(`${base}/billing/config.js`, { headers: { 'If-None-Match': etag } });
    expect(again.status).toBe(304);
    const virtual = await fetch(`${base}/virtual.txt`);
    expect(virtual.status).toBe(200);
    expect(await virtual.text()).toBe('only in memory');
    expect(virtual.headers.get('cache-control')).toBe('public, max-age=3600');
  });
});
