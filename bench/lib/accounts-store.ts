/**
 * Where `npm run bench:accounts` keeps its sub-accounts: the embedded SQLite store (default), or
 * PostgreSQL + Redis (`STORE=shared`: a database of the run's own and a private redis-server per
 * gateway, both removed at the end). Filler accounts go straight into the store while no gateway
 * runs, with random key fingerprints (they never authenticate).
 */
import pg from 'pg';
import { adminUrlFromEnv, createBenchDatabase, type BenchDatabase } from './postgres.js';
import { startBenchRedis, type BenchRedis } from './redis-server.js';
import { insertFillerAccounts } from './gateway.js';

export type StoreKind = 'sqlite' | 'shared';

export interface BenchStore {
  readonly kind: StoreKind;
  /** What the gateway needs in its environment to use this store. */
  readonly env: Record<string, string>;
  /** Inserts `count` filler sub-accounts under the root (no gateway running). */
  fill(count: number): Promise<void>;
  /** Sub-accounts stored (root excluded). */
  count(): Promise<number>;
  close(): Promise<void>;
}

export async function openBenchStore(kind: StoreKind, dataDir: string): Promise<BenchStore> {
  if (kind === 'sqlite') {
    return {
      kind,
      env: {},
      fill: (count) => {
        insertFillerAccounts(dataDir, count);
        return Promise.resolve();
      },
      count: () => Promise.resolve(Number.NaN),
      close: () => Promise.resolve(),
    };
  }
  const adminUrl = adminUrlFromEnv();
  if (adminUrl === undefined) throw new Error('STORE=shared needs PostgreSQL (BENCH_POSTGRES is off)');
  const db: BenchDatabase = await createBenchDatabase(adminUrl);
  let redis: BenchRedis;
  try {
    redis = await startBenchRedis(undefined);
  } catch (err) {
    await db.drop();
    throw err;
  }
  const query = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> => {
    const client = new pg.Client({ connectionString: db.dsn });
    client.on('error', () => undefined);
    await client.connect();
    try {
      return (await client.query<R>(text, values)).rows;
    } finally {
      await client.end().catch(() => undefined);
    }
  };
  return {
    kind,
    env: { POSTGRES_DSN: db.dsn, REDIS_ADDR: redis.addr },
    async fill(count) {
      const root = await query<{ id: number }>('select id from accounts where is_root = 1');
      if (root[0] === undefined) throw new Error('no root account in the database');
      // One statement; names are ASCII, so their folded keys are their lower case.
      await query(
        `insert into accounts (parent_id, name, email, alias, billing_email, key_hash, partial_key, level,
           rates, rate_limit, child_limit, hard_limit, soft_limit, status, is_root, allow_ips, allow_models,
           credit_granted, credit_used, requests, soft_notice_month, created_at, updated_at, name_key, email_key)
         select $1, n, n || '@bench.invalid', n, null, h, left(h, 20), 0, 1000000, 1000, 0, 0, 0, 1, 0, null, null,
           0, 0, 0, null, $2, $2, n, n || '@bench.invalid'
         from (select 'filler-' || g || '-' || left(md5(g::text || random()::text), 16) as n,
                      md5(random()::text) || md5(g::text) as h
               from generate_series(1, $3::int) g) f`,
        [root[0].id, Date.now(), count],
      );
      await query('analyze accounts');
    },
    async count() {
      const r = await query<{ n: string }>('select count(*) - 1 as n from accounts');
      return Number(r[0]?.n ?? Number.NaN);
    },
    async close() {
      await redis.stop();
      await db.drop();
    },
  };
}
