/**
 * The gateway under test as a child process (`node dist/main.js`), configured only through its
 * environment like in production, plus the set-up the benchmark needs: a funded sub-account made
 * through the public API (its key drives the load, so auth, limits, reservation and metering are
 * all on), extra pool keys through /x-keys, and filler accounts inserted straight into SQLite
 * between two starts (the filler rows need no valid keys; they only grow the in-memory registry).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { foldKey } from '../../src/accounts/account-rules.js';
import Database from '../../src/store/sqlite/driver.js';
import { freePort, startNode, stopProc, waitReady, type Proc } from './procs.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/**
 * Package root of the gateway under test (must hold a built dist/main.js, config/ and pages/):
 * this repository by default; BENCH_GATEWAY_ROOT measures another build, e.g. an older commit
 * extracted with `git archive` and built (its node_modules may be a symlink to this one).
 */
export const GATEWAY_ROOT = process.env['BENCH_GATEWAY_ROOT'] ?? REPO_ROOT;
export const ROOT_KEY = 'sk-Xvs' + 'Bench'.repeat(9);
const MASTER_KEY = randomBytes(32).toString('hex');

export function poolKeys(count: number, offset = 0): string[] {
  return Array.from({ length: count }, (_, i) => `sk-bench${String(offset + i).padStart(8, '0')}upstream`);
}

/** Extra gateway environment for every start, from BENCH_GATEWAY_ENV="NAME=value,NAME=value". */
const EXTRA_ENV: Record<string, string> = Object.fromEntries(
  (process.env['BENCH_GATEWAY_ENV'] ?? '')
    .split(',')
    .map((kv) => kv.trim())
    .filter((kv) => kv.includes('='))
    .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
);

export interface Gateway {
  readonly proc: Proc;
  readonly url: string;
  readonly dataDir: string;
}

export interface GatewayOpts {
  readonly name: string;
  readonly dataDir: string;
  readonly mockUrl: string;
  readonly cpu: number | undefined;
  readonly logDir: string;
  readonly env?: Record<string, string>;
  /** Extra node flags, e.g. --cpu-prof. */
  readonly nodeArgs?: readonly string[];
  /** Another build to run (a checkout with its `dist/`): A/B comparisons. */
  readonly root?: string;
}

/**
 * The Node flags of the package's own start command (`npm start`: `node <flags> dist/main.js`), so
 * the benchmark runs the gateway the way users start it (the Dockerfile and the systemd unit use
 * the same flags; a test keeps them equal).
 */
export function startFlags(root = GATEWAY_ROOT): string[] {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    scripts?: { start?: string };
  };
  const m = /^node\s+(.*?)\s*dist\/main\.js$/.exec(pkg.scripts?.start?.trim() ?? '');
  if (m === null) throw new Error(`${root}/package.json: "start" is not "node [flags] dist/main.js"`);
  return (m[1] ?? '').split(/\s+/).filter((f) => f !== '');
}

export async function startGateway(opts: GatewayOpts): Promise<Gateway> {
  const port = await freePort();
  const proc = startNode({
    name: opts.name,
    args: [
      ...startFlags(opts.root),
      ...(opts.nodeArgs ?? []),
      join(opts.root ?? GATEWAY_ROOT, 'dist/main.js'),
    ],
    cpu: opts.cpu,
    logFile: join(opts.logDir, `${opts.name}.log`),
    env: {
      PORT: String(port),
      HOST: '127.0.0.1',
      DATA_DIR: opts.dataDir,
      OPENAI_API_BASE: opts.mockUrl,
      INIT_KEYS: poolKeys(10).join(','),
      INIT_USERS: `root:root@example.com:${ROOT_KEY}`,
      MASTER_KEY,
      LOG_LEVEL: 'warn',
      ...EXTRA_ENV,
      ...opts.env,
    },
  });
  const url = `http://127.0.0.1:${port}`;
  await waitReady(proc, `${url}/healthz`);
  return { proc, url, dataDir: opts.dataDir };
}

export function stopGateway(gw: Gateway): Promise<number | null> {
  return stopProc(gw.proc, 30_000);
}

async function post(
  url: string,
  key: string,
  body: unknown,
  method = 'POST',
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(url, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // keep the text
  }
  return { status: res.status, json };
}

export interface SubAccount {
  readonly key: string;
  /** True when /x-users was unavailable and the root key is used instead. */
  readonly rootFallback: boolean;
  readonly note: string;
}

/** `POST /x-users` as root; falls back to the root key (loudly) when the API is unavailable. */
export async function createSubAccount(gw: Gateway, name = 'benchuser'): Promise<SubAccount> {
  const r = await post(`${gw.url}/x-users`, ROOT_KEY, {
    Name: name,
    Email: `${name}@example.com`,
    CreditGranted: 1_000_000,
  });
  const user = (r.json as { User?: { SecretKey?: unknown } } | null)?.User;
  if (r.status === 200 && typeof user?.SecretKey === 'string') {
    return {
      key: user.SecretKey,
      rootFallback: false,
      note: `sub-account "${name}" created via POST /x-users`,
    };
  }
  const note = `root key used: sub-account API unavailable (POST /x-users answered ${r.status}: ${JSON.stringify(r.json).slice(0, 200)})`;
  process.stderr.write(`\n${'!'.repeat(100)}\n!!! ${note}\n${'!'.repeat(100)}\n\n`);
  return { key: ROOT_KEY, rootFallback: true, note };
}

/** `PUT /x-users/{name}` as root, e.g. `{ RateLimit: 999_999 }`; throws unless it answers 200. */
export async function updateSubAccount(
  gw: Gateway,
  name: string,
  change: Record<string, unknown>,
): Promise<void> {
  const r = await post(`${gw.url}/x-users/${encodeURIComponent(name)}`, ROOT_KEY, change, 'PUT');
  if (r.status !== 200)
    throw new Error(`PUT /x-users/${name} answered ${r.status}: ${JSON.stringify(r.json).slice(0, 200)}`);
}

/** Adds `count` pool keys through `POST /x-keys`, `concurrency` requests at a time. */
export async function addPoolKeys(
  gw: Gateway,
  count: number,
  offset: number,
  concurrency = 32,
): Promise<void> {
  const keys = poolKeys(count, offset);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < keys.length) {
      const key = keys[next++] as string;
      const r = await post(`${gw.url}/x-keys`, ROOT_KEY, { SecretKey: key });
      if (r.status !== 200) throw new Error(`POST /x-keys answered ${r.status}: ${JSON.stringify(r.json)}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/**
 * Inserts `count` filler sub-accounts of root directly into the (stopped) gateway's database.
 * Their key hashes are random, so they can never authenticate; they only make the registry big.
 */
export function insertFillerAccounts(dataDir: string, count: number): void {
  const db = new Database(join(dataDir, 'proxyxai.db'));
  try {
    const root = db.prepare('select id from accounts where is_root = 1').get() as { id: number } | undefined;
    if (root === undefined) throw new Error('no root account in the database');
    const insert = db.prepare(
      `insert into accounts (parent_id, name, email, name_key, email_key, alias, billing_email, key_hash,
        partial_key, level, rates, rate_limit, child_limit, hard_limit, soft_limit, status, is_root,
        allow_ips, allow_models, credit_granted, credit_used, requests, soft_notice_month, created_at,
        updated_at)
       values (?, ?, ?, ?, ?, ?, null, ?, ?, 0, 1000000, 1000, 0, 0, 0, 1, 0, null, null, 0, 0, 0, null, ?, ?)`,
    );
    const now = Date.now();
    db.transaction(() => {
      for (let i = 0; i < count; i++) {
        const tag = randomBytes(8).toString('hex');
        const name = `filler-${i}-${tag}`;
        const email = `${name}@bench.invalid`;
        // The lookup keys the gateway writes with every account (store/schema.ts).
        insert.run(
          root.id,
          name,
          email,
          foldKey(name),
          foldKey(email),
          name,
          randomBytes(32).toString('hex'),
          tag.padEnd(20, '0'),
          now,
          now,
        );
      }
    })();
  } finally {
    db.close();
  }
}

export interface HeapStats {
  readonly heapUsedMB: number;
  readonly heapTotalMB: number;
  readonly externalMB: number;
}

/** V8 heap figures from the gateway's own /metrics (prom-client default metrics); NaN if absent. */
export async function heapStats(gw: Gateway): Promise<HeapStats> {
  let text = '';
  try {
    const res = await fetch(`${gw.url}/metrics`, { signal: AbortSignal.timeout(5_000) });
    text = await res.text();
  } catch {
    // leave NaN
  }
  const mb = (name: string): number => {
    const m = new RegExp(`^\\w*${name}\\s+([0-9.e+]+)`, 'm').exec(text);
    return m === null ? Number.NaN : Number(m[1]) / (1024 * 1024);
  };
  return {
    heapUsedMB: mb('nodejs_heap_size_used_bytes'),
    heapTotalMB: mb('nodejs_heap_size_total_bytes'),
    externalMB: mb('nodejs_external_memory_bytes'),
  };
}

/** One sample of the gateway's /metrics (the first series of `name`); NaN if absent. */
export async function metricValue(gw: Gateway, name: string): Promise<number> {
  const res = await fetch(`${gw.url}/metrics`, { signal: AbortSignal.timeout(5_000) });
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+([0-9.e+]+)`, 'm').exec(await res.text());
  return m === null ? Number.NaN : Number(m[1]);
}

/** Number of accounts and upstream keys stored (to report what a scale configuration held). */
export function storedCounts(dataDir: string): { accounts: number; keys: number } {
  const db = new Database(join(dataDir, 'proxyxai.db'), { readonly: true });
  try {
    const a = db.prepare('select count(*) as n from accounts').get() as { n: number };
    const k = db.prepare('select count(*) as n from upstream_keys').get() as { n: number };
    return { accounts: a.n, keys: k.n };
  } finally {
    db.close();
  }
}
