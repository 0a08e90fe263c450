/**
 * A short soak of the real gateway with forced garbage collections, for the Node line the image
 * runs on (CI runs it on Node 24 from .ci/node24): better-sqlite3 12 aborted the process in a
 * garbage collection there, in idle collections as much as busy ones. The gateway is built in this
 * process against the mock upstream; a few thousand requests of every kind that touches the store
 * (sub-account API, chat JSON and streams, responses, files, readiness checks) are sent while collections run, from
 * JavaScript and from V8 tasks (`execution: 'async'`, the case that aborted), over several lives of
 * the gateway in one process. (The negative control is the test suite itself: on Node 24 with
 * better-sqlite3 12 two test files abort in vitest's workers; this soak, in plain Node, has not made
 * 12 abort in three tries, so it guards the image's line against regressions rather than proving
 * the fix on its own.)
 *
 *   node --expose-gc --import tsx scripts/soak.ts [requests]     # default 3,000
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { sql } from 'kysely';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { startMockUpstream } from '../test/support/mock-upstream.js';

type Gc = (opts?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async' }) => void | Promise<void>;
const exposed = (globalThis as { gc?: Gc }).gc;
if (exposed === undefined) throw new Error('run with node --expose-gc');
const gc: Gc = exposed;

const total = Number(process.argv[2] ?? 3_000);
const ROUNDS = 6;
const ROOT = 'sk-Xvs' + 'S'.repeat(45);
const mock = await startMockUpstream();
const started = Date.now();
let done = 0;

// Several lives of the gateway in one process, as the test suite and restarts do: statements and
// databases of a stopped store are what collections from V8 tasks finalised when 12 aborted.
for (let round = 0; round < ROUNDS; round++) {
  const dir = mkdtempSync(join(tmpdir(), 'proxyxai-soak-'));
  const app = await buildApp(
    loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: dir,
      INIT_USERS: `root:root@example.com:${ROOT}`,
      INIT_KEYS: 'sk-upstream-soak-000000000001,sk-upstream-soak-000000000002',
      OPENAI_API_BASE: mock.url,
      FLUSH_INTERVAL_MS: '20',
      LOG_LEVEL: 'warn',
      TZ: 'UTC',
    }),
    { logDestination: new Writable({ write: (_c, _e, cb) => cb() }) },
  );
  const { url } = await app.listen();
  done += await load(app, url, Math.ceil(total / ROUNDS));
  await app.stop();
  rmSync(dir, { recursive: true, force: true });
  // Idle: collections from V8 tasks, with nothing else running.
  for (let k = 0; k < 5; k++) {
    await gc({ type: k % 2 === 0 ? 'major' : 'minor', execution: 'async' });
    await new Promise((r) => setTimeout(r, 40));
  }
}
await mock.close();
await gc();
await new Promise((r) => setTimeout(r, 300));
console.log(
  `soak: ${done} requests in ${ROUNDS} gateway lives on Node ${process.versions.node}, ${((Date.now() - started) / 1000).toFixed(1)} s, with forced garbage collections: no abort`,
);

async function load(app: Awaited<ReturnType<typeof buildApp>>, url: string, count: number): Promise<number> {
  const call = async (path: string, key: string, body?: unknown, method?: string): Promise<void> => {
    const r = await fetch(url + path, {
      method: method ?? (body === undefined ? 'GET' : 'POST'),
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    await r.arrayBuffer();
    if (r.status >= 500) throw new Error(`${path} answered ${r.status}`);
  };
  const created = await fetch(`${url}/x-users`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ROOT}` },
    body: JSON.stringify({ Name: 'soaker', Email: 'soak@example.com', CreditGranted: 1000 }),
  });
  const key = ((await created.json()) as { User: { SecretKey: string } }).User.SecretKey;
  const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'soak' }] };
  for (let i = 0; i < count; i++) {
    switch (i % 7) {
      case 0:
        await call('/v1/chat/completions', key, chat);
        break;
      case 1:
        await call('/v1/chat/completions', key, { ...chat, stream: true });
        break;
      case 2:
        await call('/v1/responses', key, { model: 'gpt-4o-mini', input: 'soak' });
        break;
      case 3:
        await call('/x-users/soaker', ROOT, { Alias: `soak ${i}` }, 'PUT');
        break;
      case 4:
        await call('/v1/files', key);
        break;
      case 5:
        // Health checks run every few seconds in production; each one asks the store.
        await call('/readyz', key);
        break;
      default:
        await call('/dashboard/x_user/info', key);
    }
    // Statements the store's cache lets go (distinct SQL beyond its 256 entries), as months of
    // varied queries would make.
    for (let j = 0; j < 10; j++) await sql`select ${sql.raw(String(i * 10 + j))} as n`.execute(app.store.db);
    if (i % 50 === 0) await gc({ type: 'major', execution: 'async' });
  }
  return count;
}
