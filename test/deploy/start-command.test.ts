// The image's start command, run the way the container would run it, without a Docker engine:
// the build context is the checkout's files through .dockerignore; each Dockerfile stage gets a
// folder of its own and its COPY instructions are carried out as written; its `npm` and `node`
// RUN lines run as written (with npm's cache inside the test's folder), system set-up lines
// (apt-get, mkdir/chown of /data) are left to Docker. One substitution: the build stage's full
// `npm ci` is the checkout's node_modules (same lock file), to keep the test short; its
// `npm run build` runs. The runtime stage's CMD then starts with the image's ENV and the compose
// file's gateway environment, interpolated with a .env made by the README's command. The compose
// network's host names become this machine's: `postgres` is 127.0.0.1 in the libpq DSN (a fresh
// test database) and `redis:6379` a private redis-server with the .env password. It must become
// ready, pass the image's HEALTHCHECK, serve a sub-account through the mock upstream, store the
// usage row in PostgreSQL, and stop cleanly on SIGTERM.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, posix } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/gateway-process.js';
import { TEST_STORE } from '../support/gateway.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { REDIS_SERVER_BIN, startRedisServer, type RedisServer } from '../support/redis-server.js';
import { createTestDatabase, postgresTestRun, type TestDatabase } from '../support/test-databases.js';
import {
  REPO,
  asMap,
  checkoutFiles,
  createDotenvAsReadmeSays,
  dockerignoreFilter,
  execForm,
  interpolateDeep,
  parseDockerfile,
  parseLibpq,
  readCompose,
  readRepoFile,
  serviceEnvironment,
  stageEnv,
  type Stage,
} from './deploy-files.js';

const hasPostgres = postgresTestRun() !== undefined;
const hasRedis = existsSync(REDIS_SERVER_BIN);
// Once per run (the sqlite project), with PostgreSQL and redis-server on the machine.
const enabled = TEST_STORE === 'sqlite' && hasPostgres && hasRedis;
if (TEST_STORE === 'sqlite' && !enabled) {
  console.warn(
    `[deploy] SKIPPED the image start-command test: ${hasPostgres ? '' : 'no PostgreSQL server for the tests; '}` +
      `${hasRedis ? '' : `${REDIS_SERVER_BIN} missing`}`,
  );
}

const UPSTREAM_KEY = 'sk-upstream-deploy-start-000001';

let tmp: string;
let mock: MockUpstream | undefined;
let redis: RedisServer | undefined;
let db: TestDatabase;
let gateway: ChildProcess | undefined;
let exited: Promise<number | string> | undefined;
const logs: string[] = [];
const timings: string[] = [];
let stages: Map<string, StageResult>;
let runtime: Stage;
let env: Record<string, string>;
let url: string;
let rootKey: string;

interface StageResult {
  /** The stage's `/`. */
  readonly root: string;
  workdir: string;
  readonly skipped: string[];
}

process.once('exit', () => gateway?.kill('SIGKILL'));

const PASSED = [
  'NODE_EXTRA_CA_CERTS',
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
  'HTTPS_PROXY',
  'HTTP_PROXY',
  'NO_PROXY',
  'https_proxy',
  'http_proxy',
  'no_proxy',
  'npm_config_cafile',
  'npm_config_registry',
  'npm_config_nodedir',
];

function passThrough(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of PASSED) {
    const v = process.env[name];
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/** Runs a shell line as a RUN instruction would, in the stage's WORKDIR. */
function runLine(line: string, cwd: string, extraEnv: Record<string, string>): void {
  const started = Date.now();
  const r = spawnSync('sh', ['-c', line], {
    cwd,
    encoding: 'utf8',
    timeout: 8 * 60_000,
    env: {
      PATH: process.env['PATH'] ?? '',
      HOME: process.env['HOME'] ?? '/tmp',
      // How this machine reaches the registry (its CA, a proxy) and which Node headers native
      // modules build against: CI's Node 24 run has its own npm, without the machine's npmrc.
      ...passThrough(),
      // Nothing is cached outside the test's folder (npm's cache and logs, prebuilt binaries,
      // node-gyp's headers when no nodedir is configured).
      npm_config_cache: join(tmp, 'npm-cache'),
      npm_config_devdir: join(tmp, 'node-gyp'),
      npm_config_update_notifier: 'false',
      npm_config_audit: 'false',
      npm_config_fund: 'false',
      ...extraEnv,
    },
  });
  timings.push(`${line.slice(0, 70)}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (r.status !== 0) {
    throw new Error(`RUN ${line} failed (${r.status ?? r.signal}):\n${(r.stdout + r.stderr).slice(-3000)}`);
  }
}

/** Carries out one Dockerfile stage in tmp/stages/<name>. */
function buildStage(stage: Stage, context: string): StageResult {
  const result: StageResult = { root: join(tmp, 'stages', stage.name), workdir: '/', skipped: [] };
  mkdirSync(result.root, { recursive: true });
  const host = (path: string): string => join(result.root, posix.resolve(result.workdir, path));
  const env = stageEnv(stage);
  for (const i of stage.instructions) {
    switch (i.keyword) {
      case 'WORKDIR':
        result.workdir = posix.resolve(result.workdir, i.rest);
        mkdirSync(host('.'), { recursive: true });
        break;
      case 'COPY': {
        const parts = i.rest.split(/\s+/);
        const dest = parts.pop()!;
        for (const src of parts) {
          const from = i.flags['from'];
          const source =
            from === undefined
              ? join(context, src)
              : join(stages.get(from)?.root ?? '/nonexistent', posix.resolve('/', src));
          if (!existsSync(source))
            throw new Error(`COPY ${i.rest}: ${src} is not in the ${from ?? 'context'}`);
          let target = host(dest);
          if (!statSync(source).isDirectory() && (dest.endsWith('/') || parts.length > 1)) {
            target = join(target, basename(src));
          }
          mkdirSync(dirname(target), { recursive: true });
          // A directory's contents go to the destination, as docker does.
          cpSync(source, target, { recursive: true });
        }
        break;
      }
      case 'RUN': {
        const line = i.rest;
        if (/^npm ci\b/.test(line) && !line.includes('--omit=dev')) {
          // The build stage's full install: the checkout's own node_modules (the same lock file).
          symlinkSync(join(REPO, 'node_modules'), host('node_modules'));
          timings.push(`${line}: the checkout's node_modules`);
        } else if (/^(npm|node) /.test(line)) {
          runLine(line, host('.'), env);
        } else {
          result.skipped.push(line);
        }
        break;
      }
      default:
        break;
    }
  }
  return result;
}

async function waitFor(probe: () => Promise<boolean>, limitMs: number, what: string): Promise<void> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline)
      throw new Error(`${what}: not within ${limitMs} ms\n${logs.slice(-20).join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function healthcheck(): number | null {
  const health = runtime.instructions.find((i) => i.keyword === 'HEALTHCHECK')!;
  const argv = execForm(/^CMD\s+(.*)$/s.exec(health.rest)![1]!)!;
  const r = spawnSync(argv[0] === 'node' ? process.execPath : argv[0]!, argv.slice(1), {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    timeout: 15_000,
  });
  return r.status;
}

describe.runIf(enabled)('the image start command, with the compose environment', () => {
  beforeAll(async () => {
    const started = Date.now();
    tmp = mkdtempSync(join(tmpdir(), 'proxyxai-image-'));
    // The build context: the checkout's files through .dockerignore.
    const keep = dockerignoreFilter(readRepoFile('.dockerignore'));
    const context = join(tmp, 'context');
    for (const file of checkoutFiles().filter(keep)) {
      mkdirSync(dirname(join(context, file)), { recursive: true });
      cpSync(join(REPO, file), join(context, file));
    }
    const dockerfile = parseDockerfile(readRepoFile('Dockerfile'));
    stages = new Map();
    for (const stage of dockerfile.stages) stages.set(stage.name, buildStage(stage, context));
    runtime = dockerfile.stages[dockerfile.stages.length - 1]!;
    timings.push(`image built: ${((Date.now() - started) / 1000).toFixed(1)} s`);

    // The stack's other services, and the upstream.
    mock = await startMockUpstream();
    const dir = join(tmp, 'operator');
    mkdirSync(dir);
    const dotenv = createDotenvAsReadmeSays(dir);
    dotenv['INIT_KEYS'] = UPSTREAM_KEY;
    dotenv['OPENAI_API_BASE'] = mock.url;
    rootKey = dotenv['INIT_USERS']!.split(':')[2]!;
    redis = await startRedisServer({ password: dotenv['REDIS_PASS']! });
    db = await createTestDatabase();

    const compose = interpolateDeep(readCompose(), dotenv);
    const composeEnv = serviceEnvironment(asMap(compose['services'])['gateway']!);
    env = { ...stageEnv(runtime), ...composeEnv };
    // The compose network's names on this machine.
    const admin = new URL(postgresTestRun()!.adminUrl);
    const dsn = parseLibpq(env['POSTGRES_DSN']!);
    const value = (key: string): string | undefined => dsn.find(([k]) => k === key)?.[1];
    expect(value('host')).toBe('postgres');
    expect(value('password')).toBe(dotenv['POSTGRES_PASSWORD']);
    const mapped: Record<string, string> = {
      host: '127.0.0.1',
      port: admin.port === '' ? '5432' : admin.port,
      user: decodeURIComponent(admin.username),
      dbname: db.database,
    };
    env['POSTGRES_DSN'] = [...dsn.map(([k, v]) => `${k}=${mapped[k] ?? v}`), `search_path=${db.schema}`].join(
      ' ',
    );
    expect(env['REDIS_ADDR']).toBe('redis:6379');
    env['REDIS_ADDR'] = redis.addr;
    // The published port, and the volume.
    const port = await freePort();
    env['PORT'] = String(port);
    env['HOST'] = '127.0.0.1';
    env['DATA_DIR'] = join(tmp, 'data');
    url = `http://127.0.0.1:${port}`;

    const cmd = execForm(runtime.instructions.filter((i) => i.keyword === 'CMD').at(-1)!.rest)!;
    const app = stages.get(runtime.name)!;
    const child = spawn(cmd[0] === 'node' ? process.execPath : cmd[0]!, cmd.slice(1), {
      cwd: join(app.root, app.workdir),
      env: { PATH: process.env['PATH'] ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    gateway = child;
    const collect = (chunk: Buffer): void => {
      logs.push(
        ...chunk
          .toString('utf8')
          .split('\n')
          .filter((l) => l !== ''),
      );
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? '?')));
  }, 15 * 60_000);

  afterAll(async () => {
    if (gateway !== undefined && gateway.exitCode === null && gateway.signalCode === null) {
      gateway.kill('SIGKILL');
      await exited;
    }
    await redis?.stop();
    await mock?.close();
    if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
    console.log(`[deploy] ${timings.join('; ')}`);
  }, 60_000);

  it('holds production dependencies only, the compiled code, the pages and the price table', () => {
    const app = stages.get(runtime.name)!;
    const root = join(app.root, app.workdir);
    for (const path of ['package.json', 'dist/main.js', 'config/prices.json', 'pages/docs/index.html']) {
      expect(existsSync(join(root, path)), path).toBe(true);
    }
    for (const path of [
      'src',
      'test',
      'node_modules/typescript',
      'node_modules/vitest',
      'node_modules/yaml',
    ]) {
      expect(existsSync(join(root, path)), path).toBe(false);
    }
    for (const path of ['node_modules/pg', 'node_modules/better-sqlite3/build/Release/better_sqlite3.node']) {
      expect(existsSync(join(root, path)), path).toBe(true);
    }
    // Left to Docker: the toolchain of the deps stage, the /data directory of the runtime stage.
    expect(stages.get('deps')!.skipped.join('\n')).toContain('apt-get install');
    expect(app.skipped.join('\n')).toContain('/data');
  });

  it('becomes ready on PostgreSQL and Redis, and passes the image HEALTHCHECK', async () => {
    await waitFor(
      async () => (await fetch(`${url}/readyz`)).status === 200,
      60_000,
      'GET /readyz answers 200',
    );
    const ready = (await (await fetch(`${url}/readyz`)).json()) as Record<string, unknown>;
    expect(ready).toMatchObject({ status: 'ready', store: true, upstream_keys: true, redis: true });
    expect(healthcheck()).toBe(0);
    // The pages are served from the image.
    expect((await fetch(`${url}/docs/`)).status).toBe(200);
  });

  it('serves a sub-account through the upstream and stores the usage row in PostgreSQL', async () => {
    const auth = { authorization: `Bearer ${rootKey}`, 'content-type': 'application/json' };
    const created = await fetch(`${url}/x-users`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ Name: 'alice', Email: 'alice@example.com', CreditGranted: 50 }),
    });
    const body = (await created.json()) as { User?: { SecretKey?: string } };
    expect(created.status, JSON.stringify(body)).toBe(200);
    const key = body.User!.SecretKey!;

    const r = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] }),
    });
    const answer = (await r.json()) as { choices?: { message?: { content?: string } }[] };
    expect(r.status, JSON.stringify(answer)).toBe(200);
    expect(answer.choices?.[0]?.message?.content).toBe('Hello from mock');
    expect(mock!.requests.at(-1)?.key).toBe(UPSTREAM_KEY);

    const c = db.connection;
    const client = new pg.Client({
      host: c.host,
      port: c.port,
      user: c.user,
      database: c.database,
      connectionTimeoutMillis: 10_000,
    });
    client.on('error', () => undefined);
    await client.connect();
    try {
      let rows: { model: string; cost: string; status: number }[] = [];
      await waitFor(
        async () => {
          const q = await client.query<{ model: string; cost: string; status: number }>(
            `select u.model, u.cost::text as cost, u.status from ${db.schema}.usage_records u
               join ${db.schema}.accounts a on a.id = u.account_id where a.name = 'alice'`,
          );
          rows = q.rows;
          return rows.length > 0;
        },
        10_000,
        'the usage row in PostgreSQL',
      );
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ model: 'gpt-4o-mini', status: 200 });
      expect(Number(rows[0]!.cost)).toBeGreaterThan(0);
    } finally {
      await client.end();
    }
  });

  it('stops on SIGTERM with exit status 0, and the healthcheck then fails', async () => {
    gateway!.kill('SIGTERM');
    const code = await Promise.race([
      exited!,
      new Promise<string>((r) => setTimeout(() => r('still running after 20 s'), 20_000)),
    ]);
    expect(code, logs.slice(-10).join('\n')).toBe(0);
    expect(logs.join('\n')).toContain('shutting down');
    expect(healthcheck()).not.toBe(0);
    // No secret in the logs.
    const all = logs.join('\n');
    for (const secret of [rootKey, UPSTREAM_KEY, env['MASTER_KEY']!, env['REDIS_PASS']!]) {
      expect(all).not.toContain(secret);
    }
  });
});
