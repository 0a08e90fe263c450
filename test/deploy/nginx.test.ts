// The nginx examples under nginx itself (Debian's package): `nginx -t` on both configurations, then
// the host one serving the four sites in front of a gateway. A streamed answer arrives chunk by
// chunk (the first byte long before the last), and with `proxy_buffering on` instead it would not:
// the gateway's own `X-Accel-Buffering: no` is ignored here so that the configuration is what is
// tested. X-Forwarded-For with TRUSTED_PROXIES gives the gateway the client's address, which a
// forged header cannot change; Realtime's WebSocket upgrade passes; the static sites answer their
// pages and a config.js naming the api site.
//
// nginx runs as a test process: its own prefix, pid, logs and temporary folders in a temporary
// directory, free loopback ports, one process (master_process off) that dies with the test
// process, and a self-signed certificate for the four names made here with openssl. What is changed
// in the example to run it here, each change checked to apply: listen ports (IPv6 lines dropped),
// certificate paths, the pages' root, the gateway's address; for the compose template on an nginx
// older than the image's, `http2 on` (1.25.1) and the upstream's `resolve` (1.27.3).
import { execFileSync, spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientOptions } from 'ws';
import { createChild, updateChild } from '../support/accounts.js';
import { freePort } from '../support/gateway-process.js';
import { TEST_STORE, removeDir, startGateway, type TestGateway } from '../support/gateway.js';
import { attachMockRealtime, openRealtime, type MockRealtime } from '../support/mock-realtime.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import {
  REPO,
  findNginx,
  parseNginx,
  readRepoFile,
  renderNginxTemplate,
  serializeNginx,
  type NginxDirective,
} from './deploy-files.js';

const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx'].find((p) => existsSync(p));
const OPENSSL = ['/usr/bin/openssl', '/usr/local/bin/openssl'].find((p) => existsSync(p));
const enabled = TEST_STORE === 'sqlite' && NGINX !== undefined && OPENSSL !== undefined;
if (TEST_STORE === 'sqlite' && !enabled) {
  console.warn(
    `[deploy] SKIPPED the nginx tests: ${NGINX === undefined ? "nginx is not installed (Debian's nginx package; .ci/run installs it)" : 'openssl is missing'}`,
  );
}

const SITES = ['api.example.com', 'usage.example.com', 'sub.example.com', 'example.com'];
const K = 'sk-upstream-deploy-nginx-000001';
const CHUNKS = 6;
const INTERVAL_MS = 150;

let tmp: string;
let cert: string;
let mock: MockUpstream;
let rt: MockRealtime;
let gw: TestGateway;
let subKey: string;
const nginxes: RunningNginx[] = [];

/** nginx's version as [major, minor, patch]. */
function nginxVersion(): number[] {
  const r = spawnSync(NGINX!, ['-v'], { encoding: 'utf8' });
  const m = /nginx\/(\d+)\.(\d+)\.(\d+)/.exec(`${r.stdout}${r.stderr}`);
  if (m === null) throw new Error(`nginx -v: ${r.stderr}`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}
const atLeast = (v: number[], want: number[]): boolean => {
  for (let i = 0; i < 3; i++) if (v[i] !== want[i]) return v[i]! > want[i]!;
  return true;
};

interface Ports {
  readonly tls: number;
  readonly http: number;
}

/**
 * The example made runnable here. Each change must apply at least once (or the example no longer
 * looks as the test expects, which fails it).
 */
function adapt(
  conf: NginxDirective[],
  opts: { ports: Ports; certDir: string; pagesFrom: string; gatewayFrom: string; gatewayTo: string },
): { conf: NginxDirective[]; changes: Map<string, number> } {
  const changes = new Map<string, number>();
  const count = (what: string): void => void changes.set(what, (changes.get(what) ?? 0) + 1);
  const version = nginxVersion();
  const walk = (block: NginxDirective[]): NginxDirective[] =>
    block.flatMap((d): NginxDirective[] => {
      const args = [...d.args];
      if (d.name === 'listen') {
        if (args[0]!.startsWith('[::]')) {
          count('IPv6 listen dropped');
          return [];
        }
        if (args[0] === '443') args[0] = `127.0.0.1:${opts.ports.tls}`;
        else if (args[0] === '80') args[0] = `127.0.0.1:${opts.ports.http}`;
        else throw new Error(`unexpected listen ${args.join(' ')}`);
        count('listen');
      }
      if (d.name === 'http2' && !atLeast(version, [1, 25, 1])) {
        count('http2 on dropped (nginx < 1.25.1)');
        return [];
      }
      if (d.name === 'ssl_certificate' || d.name === 'ssl_certificate_key') {
        const file = args[0]!.split('/').at(-1)!;
        expect(args[0]).toBe(`/etc/letsencrypt/live/example.com/${file}`);
        args[0] = join(opts.certDir, file);
        count('certificate');
      }
      if (d.name === 'root') {
        expect(args[0]!.startsWith(opts.pagesFrom)).toBe(true);
        args[0] = join(REPO, 'pages', args[0]!.slice(opts.pagesFrom.length));
        count('pages root');
      }
      if (d.name === 'server' && d.block === undefined) {
        expect(args[0]).toBe(opts.gatewayFrom);
        args[0] = opts.gatewayTo;
        if (args.includes('resolve') && !atLeast(version, [1, 27, 3])) {
          args.splice(args.indexOf('resolve'), 1);
          count('resolve dropped (nginx < 1.27.3)');
        }
        count('gateway address');
      }
      return [{ ...d, args, ...(d.block !== undefined && { block: walk(d.block) }) }];
    });
  const out = walk(conf);
  for (const what of ['listen', 'certificate', 'pages root', 'gateway address']) {
    expect(changes.get(what) ?? 0, what).toBeGreaterThan(0);
  }
  return { conf: out, changes };
}

/** The main configuration around a site file: everything of nginx's in `dir`. */
function mainConf(dir: string, site: string, extraHttp = ''): string {
  for (const d of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'])
    mkdirSync(join(dir, d), { recursive: true });
  return [
    'daemon off;',
    'master_process off;',
    'worker_processes 1;',
    ...(process.getuid?.() === 0 ? ['user root;'] : []),
    `pid ${join(dir, 'nginx.pid')};`,
    `error_log ${join(dir, 'error.log')} warn;`,
    'events { worker_connections 256; }',
    'http {',
    '  types { text/html html; application/javascript js; text/css css; image/svg+xml svg; }',
    '  default_type application/octet-stream;',
    '  access_log off;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((d) => `  ${d}_temp_path ${join(dir, d)};`),
    extraHttp,
    `  include ${site};`,
    '}',
    '',
  ].join('\n');
}

function nginxTest(dir: string): { ok: boolean; output: string } {
  const r = spawnSync(
    NGINX!,
    ['-t', '-p', `${dir}/`, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')],
    {
      encoding: 'utf8',
      timeout: 20_000,
    },
  );
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}

/** Writes `site` (and the main configuration) into a fresh folder under tmp. */
function prepare(name: string, site: NginxDirective[]): string {
  const dir = join(tmp, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'site.conf'), serializeNginx(site));
  writeFileSync(join(dir, 'nginx.conf'), mainConf(dir, join(dir, 'site.conf')));
  return dir;
}

// nginx under a guard that kills it when our end of its stdin closes: when the test process ends,
// however it ends, nothing is left running.
const GUARD = [
  'exec 3<&0',
  '"$@" & pid=$!',
  '{ read -r _x <&3; kill -9 "$pid" 2>/dev/null; } & reader=$!',
  'wait "$pid"; status=$?',
  'kill "$reader" 2>/dev/null',
  'exit "$status"',
].join('; ');

interface RunningNginx {
  readonly ports: Ports;
  stop(): Promise<void>;
}

async function startNginx(dir: string, ports: Ports): Promise<RunningNginx> {
  const child: ChildProcessByStdio<Writable, Readable, Readable> = spawn(
    '/bin/sh',
    [
      '-c',
      GUARD,
      'nginx-guard',
      NGINX!,
      '-p',
      `${dir}/`,
      '-c',
      join(dir, 'nginx.conf'),
      '-e',
      join(dir, 'error.log'),
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) {
      const log = existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : '';
      throw new Error(`nginx exited (${child.exitCode}): ${output}${log}`);
    }
    const open = await new Promise<boolean>((resolve) => {
      const s = connect(ports.tls, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (open) break;
    if (Date.now() > deadline) throw new Error(`nginx did not listen within 10 s: ${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const running: RunningNginx = {
    ports,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.stdin.end();
        await gone;
      }
    },
  };
  nginxes.push(running);
  return running;
}

async function newPorts(): Promise<Ports> {
  return { tls: await freePort(), http: await freePort() };
}

interface Exchange {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** When each piece of the body arrived (ms since the request was sent). */
  arrivals: number[];
}

/** One HTTPS request to nginx for `site` (SNI and Host), from `localAddress`. */
function viaNginx(
  ports: Ports,
  site: string,
  path: string,
  init: {
    method?: string;
    body?: unknown;
    key?: string;
    headers?: Record<string, string>;
    from?: string;
  } = {},
): Promise<Exchange> {
  const body = init.body === undefined ? undefined : JSON.stringify(init.body);
  return new Promise((resolve, reject) => {
    const sent = Date.now();
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port: ports.tls,
        path,
        method: init.method ?? (body === undefined ? 'GET' : 'POST'),
        servername: site,
        ca: readFileSync(join(cert, 'fullchain.pem')),
        localAddress: init.from ?? '127.0.0.1',
        agent: false,
        headers: {
          host: site,
          ...(init.key !== undefined && { authorization: `Bearer ${init.key}` }),
          ...(body !== undefined && { 'content-type': 'application/json' }),
          ...init.headers,
        },
      },
      (res) => {
        const arrivals: number[] = [];
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          arrivals.push(Date.now() - sent);
          text += chunk;
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, arrivals }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(20_000, () => req.destroy(new Error('timed out')));
    req.end(body);
  });
}

const streamed = { model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hello' }] };

describe.runIf(enabled)('nginx examples under nginx', () => {
  let hostSite: NginxDirective[];
  let ports: Ports;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'proxyxai-nginx-'));
    cert = join(tmp, 'certs');
    mkdirSync(cert);
    execFileSync(
      OPENSSL!,
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=example.com',
        '-addext',
        `subjectAltName=${SITES.map((s) => `DNS:${s}`).join(',')}`,
        '-keyout',
        join(cert, 'privkey.pem'),
        '-out',
        join(cert, 'fullchain.pem'),
      ],
      { stdio: 'pipe' },
    );
    mock = await startMockUpstream({ stream: { chunks: CHUNKS, intervalMs: INTERVAL_MS } });
    rt = attachMockRealtime(mock);
    gw = await startGateway({ OPENAI_API_BASE: mock.url, INIT_KEYS: K, TRUSTED_PROXIES: '127.0.0.1' });
    subKey = await createChild(gw, 'alice', 50);
    ports = await newPorts();
    hostSite = hostConfig(ports);
  }, 60_000);

  /** deploy/nginx/proxyxai.conf on `ports`, in front of the test's gateway. */
  const hostConfig = (on: Ports): NginxDirective[] =>
    adapt(parseNginx(readRepoFile('deploy/nginx/proxyxai.conf')), {
      ports: on,
      certDir: cert,
      pagesFrom: '/opt/proxyxai/pages/',
      gatewayFrom: '127.0.0.1:3443',
      gatewayTo: new URL(gw.url).host,
    }).conf;

  afterAll(async () => {
    for (const n of nginxes) await n.stop();
    await gw?.stop();
    rt?.close();
    await mock?.close();
    if (gw !== undefined) removeDir(gw.dataDir);
    if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
  });

  it('nginx -t accepts deploy/nginx/proxyxai.conf', () => {
    const t = nginxTest(prepare('host-t', hostSite));
    expect(t.output).toContain('test is successful');
    expect(t.ok).toBe(true);
    expect(t.output).not.toMatch(/\[emerg\]/);
  });

  it('nginx -t accepts the compose template, rendered as the nginx image does', () => {
    const rendered = renderNginxTemplate(readRepoFile('deploy/nginx/compose/default.conf.template'), {
      PROXYXAI_DOMAIN: 'example.com',
    });
    expect(rendered).not.toContain('PROXYXAI_DOMAIN');
    const { conf, changes } = adapt(parseNginx(rendered), {
      ports: ports,
      certDir: cert,
      pagesFrom: '/usr/share/proxyxai/pages/',
      gatewayFrom: 'gateway:3443',
      gatewayTo: new URL(gw.url).host,
    });
    const t = nginxTest(prepare('compose-t', conf));
    expect(t.output).toContain('test is successful');
    expect(t.ok).toBe(true);
    const dropped = [...changes.keys()].filter((k) => k.includes('dropped'));
    if (dropped.length > 0)
      console.warn(`[deploy] compose template on nginx ${nginxVersion().join('.')}: ${dropped.join('; ')}`);
  });

  describe('in front of a gateway', () => {
    let nginx: RunningNginx;

    beforeAll(async () => {
      // The gateway's own X-Accel-Buffering: no would unbuffer any configuration: ignored here.
      const site = structuredClone(hostSite);
      const api = findNginx(site, 'proxy_buffering')[0]!.parents.at(-1)!;
      api.block!.push({ name: 'proxy_ignore_headers', args: ['X-Accel-Buffering'] });
      nginx = await startNginx(prepare('host', site), ports);
    }, 30_000);

    it('streams an answer as it comes: the first chunk long before the last', async () => {
      const r = await viaNginx(nginx.ports, 'api.example.com', '/v1/chat/completions', {
        key: subKey,
        body: streamed,
      });
      expect(r.status, r.body).toBe(200);
      expect(String(r.headers['content-type'])).toContain('text/event-stream');
      expect(r.body).toContain('data: [DONE]');
      const text = r.body
        .split('\n')
        .filter((l) => l.startsWith('data: {'))
        .map(
          (l) =>
            (JSON.parse(l.slice(6)) as { choices: { delta?: { content?: string } }[] }).choices[0]?.delta
              ?.content ?? '',
        )
        .join('');
      expect(text).toBe('Hello from mock');
      // The mock spaces its chunks INTERVAL_MS apart: unbuffered, they arrive spread out.
      expect(r.arrivals.length).toBeGreaterThanOrEqual(3);
      const spread = r.arrivals.at(-1)! - r.arrivals[0]!;
      expect(spread).toBeGreaterThanOrEqual(INTERVAL_MS * (CHUNKS - 2));
    });

    it('(control) with proxy_buffering on, the same answer arrives in one piece at the end', async () => {
      const controlPorts = await newPorts();
      const site = hostConfig(controlPorts);
      for (const { directive } of findNginx(site, 'proxy_buffering')) directive.args = ['on'];
      const api = findNginx(site, 'proxy_buffering')[0]!.parents.at(-1)!;
      api.block!.push({ name: 'proxy_ignore_headers', args: ['X-Accel-Buffering'] });
      const buffered = await startNginx(prepare('buffered', site), controlPorts);
      try {
        const r = await viaNginx(buffered.ports, 'api.example.com', '/v1/chat/completions', {
          key: subKey,
          body: streamed,
        });
        expect(r.status).toBe(200);
        expect(r.body).toContain('data: [DONE]');
        expect(r.arrivals.at(-1)! - r.arrivals[0]!).toBeLessThan(INTERVAL_MS);
      } finally {
        await buffered.stop();
      }
    });

    it("passes the client's address with X-Forwarded-For (TRUSTED_PROXIES), which a forged header cannot change", async () => {
      const bob = await createChild(gw, 'bobby', 50);
      expect((await updateChild(gw, 'bobby', { AllowIPs: ['127.0.0.2'] })).status).toBe(200);
      const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };
      const from2 = await viaNginx(nginx.ports, 'api.example.com', '/v1/chat/completions', {
        key: bob,
        body: chat,
        from: '127.0.0.2',
      });
      expect(from2.status, from2.body).toBe(200);
      const from3 = await viaNginx(nginx.ports, 'api.example.com', '/v1/chat/completions', {
        key: bob,
        body: chat,
        from: '127.0.0.3',
      });
      expect(from3.status).toBe(403);
      const forged = await viaNginx(nginx.ports, 'api.example.com', '/v1/chat/completions', {
        key: bob,
        body: chat,
        from: '127.0.0.3',
        headers: { 'x-forwarded-for': '127.0.0.2' },
      });
      expect(forged.status).toBe(403);
    });

    it('passes the WebSocket upgrade of /v1/realtime', async () => {
      const client = await openRealtime(`https://127.0.0.1:${nginx.ports.tls}`, {
        key: subKey,
        headers: { host: 'api.example.com' },
        // ws hands its options to the TLS connection (SNI as for the api site).
        options: {
          ca: readFileSync(join(cert, 'fullchain.pem')),
          servername: 'api.example.com',
        } as ClientOptions,
      });
      try {
        expect(await client.next('session.created')).toMatchObject({ type: 'session.created' });
        expect(rt.handshakes.at(-1)?.key).toBe(K);
      } finally {
        client.socket.close(1000);
        await client.closed;
      }
    });

    it('serves the pages on usage., sub. and the domain, each with a config.js naming the api site', async () => {
      for (const [site, title] of [
        ['usage.example.com', /<title>[^<]*<\/title>/],
        ['sub.example.com', /<title>[^<]*<\/title>/],
        ['example.com', /ProxyXAI docs/],
      ] as const) {
        const page = await viaNginx(nginx.ports, site, '/');
        expect(page.status, site).toBe(200);
        expect(String(page.headers['content-type'])).toContain('text/html');
        expect(page.body).toMatch(title);
        const config = await viaNginx(nginx.ports, site, '/config.js');
        expect(config.status).toBe(200);
        expect(config.body).toBe('window.PROXYXAI_CONFIG = { apiBase: "https://api.example.com" };');
        expect(String(config.headers['content-type'])).toContain('javascript');
      }
      const folder = (site: string, file: string): string =>
        readFileSync(join(REPO, 'pages', site, file), 'utf8');
      expect((await viaNginx(nginx.ports, 'usage.example.com', '/app.js')).body).toBe(
        folder('billing', 'app.js'),
      );
      expect((await viaNginx(nginx.ports, 'sub.example.com', '/app.js')).body).toBe(folder('user', 'app.js'));
    });

    it('redirects plain HTTP to HTTPS', async () => {
      const r = await new Promise<{ status: number; location: string | undefined }>((resolve, reject) => {
        const req = httpRequest(
          {
            host: '127.0.0.1',
            port: nginx.ports.http,
            path: '/v1/models?x=1',
            headers: { host: 'api.example.com' },
          },
          (res) => {
            res.resume();
            resolve({ status: res.statusCode ?? 0, location: res.headers.location });
          },
        );
        req.on('error', reject);
        req.end();
      });
      expect(r).toEqual({ status: 301, location: 'https://api.example.com/v1/models?x=1' });
    });
  });
});
