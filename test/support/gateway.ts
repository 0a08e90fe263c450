/**
 * Starts the real gateway for end-to-end tests: a temporary DATA_DIR, the mock upstream as
 * OPENAI_API_BASE, a known root key, and captured log lines (to assert that no key leaks).
 * In the `postgres` project (PROXYXAI_TEST_STORE=postgres) every gateway gets a fresh PostgreSQL
 * schema as POSTGRES_DSN, kept across its restarts and dropped when the test file ends.
 */
import { rmSync } from 'node:fs';
import { Writable } from 'node:stream';
import OpenAI from 'openai';
import { buildApp, type App, type AppOptions } from '../../src/app.js';
import { loadConfig } from '../../src/config/config.js';
import { watchOpenApi, type OpenApiWatch } from './openapi-check.js';
import { createTestDatabase, type TestDatabase } from './test-databases.js';
import { fileTempDir } from './temp-dirs.js';

export const ROOT_KEY = 'sk-Xvs' + 'R'.repeat(20) + 'oot0123456789abcdefghijkl';

/** The store the end-to-end tests of this project run on. */
export const TEST_STORE: 'sqlite' | 'postgres' =
  process.env['PROXYXAI_TEST_STORE'] === 'postgres' ? 'postgres' : 'sqlite';

export interface TestGateway {
  app: App;
  url: string;
  dataDir: string;
  /** The gateway's PostgreSQL schema (postgres project), the same across restarts. */
  database: TestDatabase | undefined;
  logs: string[];
  /** The answers checked against the OpenAPI description (stop() throws on a violation). */
  openapi: OpenApiWatch;
  /** OpenAI SDK client pointed at the gateway with `key` (root by default); SDK retries off. */
  client(key?: string): OpenAI;
  stop(): Promise<void>;
  /** Stops and starts again on the same DATA_DIR (restart test); returns the new gateway. */
  restart(env?: Record<string, string>): Promise<TestGateway>;
}

export async function startGateway(
  env: Record<string, string>,
  opts: { dataDir?: string; database?: TestDatabase | undefined; app?: AppOptions } = {},
): Promise<TestGateway> {
  const dataDir = opts.dataDir ?? fileTempDir('proxyxai-test-');
  const database =
    opts.database ??
    (TEST_STORE === 'postgres' && env['POSTGRES_DSN'] === undefined ? await createTestDatabase() : undefined);
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(
        ...chunk
          .toString('utf8')
          .split('\n')
          .filter((l) => l !== ''),
      );
      cb();
    },
  });
  const fullEnv = {
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    INIT_USERS: `root:root@example.com:${ROOT_KEY}`,
    LOG_LEVEL: 'info',
    TZ: 'UTC',
    FLUSH_INTERVAL_MS: '50',
    ...(database !== undefined && { POSTGRES_DSN: database.dsn }),
    ...env,
  };
  const config = loadConfig(fullEnv);
  const app = await buildApp(config, { logDestination: sink, ...opts.app });
  // Every answer on a described route is held to the OpenAPI description; stop() fails on a drift.
  const openapi = watchOpenApi(app.server, { pagesDir: config.pagesDir });
  const { url } = await app.listen();
  let stopped = false;
  const gw: TestGateway = {
    app,
    url,
    dataDir,
    database,
    logs,
    openapi,
    client: (key = ROOT_KEY) =>
      new OpenAI({ apiKey: key, baseURL: `${url}/v1`, maxRetries: 0, timeout: 20_000 }),
    async stop() {
      if (stopped) return;
      stopped = true;
      await app.stop();
      openapi.assertConforms();
    },
    async restart(extra = {}) {
      await gw.stop();
      return startGateway(
        { ...env, ...extra },
        { dataDir, database, ...(opts.app !== undefined && { app: opts.app }) },
      );
    },
  };
  return gw;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** fetch against the gateway with a key in the Authorization header (Bearer unless `raw`). */
export function call(
  gw: TestGateway,
  path: string,
  init: {
    method?: string;
    key?: string;
    raw?: boolean;
    body?: unknown;
    headers?: Record<string, string>;
  } = {},
): Promise<Response> {
  const headers: Record<string, string> = { ...init.headers };
  const key = init.key ?? ROOT_KEY;
  if (key !== '') headers['authorization'] = init.raw === true ? key : `Bearer ${key}`;
  let body: string | undefined;
  if (init.body !== undefined) {
    body = typeof init.body === 'string' ? init.body : JSON.stringify(init.body);
    headers['content-type'] ??= 'application/json';
  }
  return fetch(gw.url + path, {
    method: init.method ?? (body === undefined ? 'GET' : 'POST'),
    headers,
    ...(body !== undefined && { body }),
  });
}
