/**
 * The benchmark's own PostgreSQL database for the shared-mode phase. The run creates one database
 * on the server (`proxyxai_bench_<random>`), points the shared gateways at it, and drops it at the
 * end — also on errors and on Ctrl-C (procs.ts clean-ups) — with `DROP DATABASE … WITH (FORCE)`.
 * Only the database this run created is ever dropped: a run killed outright (SIGKILL) leaves its
 * database behind, and the next run lists such leftovers in a note instead of guessing whose they
 * are. (The same ideas as test/support/postgres.ts, which bench code must not import.)
 *
 * BENCH_POSTGRES: the server's URL as an administrator that may CREATE DATABASE (default
 * postgres://postgres@127.0.0.1:5432/postgres, trust auth); `off` skips the shared phase.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import pg from 'pg';
import { onCleanup } from './procs.js';

export function adminUrlFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const raw = env['BENCH_POSTGRES'];
  if (raw === 'off') return undefined;
  return raw !== undefined && raw !== '' ? raw : 'postgres://postgres@127.0.0.1:5432/postgres';
}

/** The admin URL without its password, for messages. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

async function withAdmin<T>(
  adminUrl: string,
  fn: (client: pg.Client) => Promise<T>,
  timeoutMs = 10_000,
): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: timeoutMs });
  // A connection lost later must not become an unhandled 'error' event.
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Undefined when the server answers and may create databases, else why not. */
export async function unavailableReason(adminUrl: string): Promise<string | undefined> {
  try {
    return await withAdmin(
      adminUrl,
      async (c) => {
        const r = await c.query<{ ok: boolean; version: string }>(
          `select (rolcreatedb or rolsuper) as ok, current_setting('server_version_num') as version
             from pg_roles where rolname = current_user`,
        );
        const row = r.rows[0];
        if (row?.ok !== true) return 'the login may not create databases';
        // DROP DATABASE … WITH (FORCE) needs PostgreSQL 13.
        if (Number(row.version) < 130000) return `PostgreSQL ${row.version} is older than 13`;
        return undefined;
      },
      3_000,
    );
  } catch (err: unknown) {
    return err instanceof Error ? err.message : String(err);
  }
}

/** Names of the benchmark's databases: `proxyxai_bench_` and 12 random hex digits. */
const PREFIX = 'proxyxai_bench_';
const NAME = /^proxyxai_bench_[0-9a-f]{12}$/;

/**
 * Databases named like the benchmark's on the server (left by killed runs, or belonging to a run
 * going on elsewhere). Reported, never dropped: this run drops only the database it created.
 */
export async function benchDatabases(adminUrl: string): Promise<string[]> {
  return withAdmin(adminUrl, async (c) => {
    const r = await c.query<{ datname: string }>(
      'select datname from pg_database where starts_with(datname, $1) order by datname',
      [PREFIX],
    );
    return r.rows.map((row) => row.datname);
  });
}

export interface BenchDatabase {
  readonly name: string;
  /** The gateways' POSTGRES_DSN. */
  readonly dsn: string;
  /** Drops the database (idempotent); also done on errors and Ctrl-C. */
  drop(): Promise<void>;
}

/** Creates a fresh, empty database of this run; it is dropped at exit whatever happens. */
export async function createBenchDatabase(adminUrl: string): Promise<BenchDatabase> {
  const name = `${PREFIX}${randomBytes(6).toString('hex')}`;
  if (!NAME.test(name)) throw new Error(`bad database name ${name}`);
  // Set once CREATE DATABASE may have happened: nothing else is ever dropped.
  let created = false;
  let dropped = false;
  let dropping: Promise<void> | undefined;
  let creating: Promise<unknown> | undefined;
  const drop = async (): Promise<void> => {
    // A Ctrl-C during CREATE: let it finish (or fail) first, so that DROP comes after it.
    await creating?.catch(() => undefined);
    if (dropped || !created) return;
    dropping ??= withAdmin(adminUrl, async (c) => {
      await c.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`);
    })
      .catch((err: unknown) => {
        const why = err instanceof Error ? err.message : String(err);
        throw new Error(`could not drop database ${name} (drop it by hand): ${why}`);
      })
      .finally(() => (dropping = undefined));
    await dropping;
    dropped = true;
  };
  // Registered before CREATE: a Ctrl-C while it runs still drops whatever was made.
  const unregister = onCleanup({ async: drop });
  try {
    creating = withAdmin(adminUrl, async (c) => {
      created = true;
      await c.query(`create database ${pg.escapeIdentifier(name)}`);
    });
    await creating;
  } catch (err) {
    // A name taken already is someone else's database: never drop it. Any other failure made
    // nothing, or (an answer lost with the connection) this run's database: drop it if it exists.
    if ((err as { code?: unknown }).code === '42P04') created = false;
    await drop().catch(() => undefined);
    unregister();
    throw err;
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  if (!url.searchParams.has('sslmode')) url.searchParams.set('sslmode', 'disable');
  return {
    name,
    dsn: url.toString(),
    drop: async () => {
      await drop();
      unregister();
    },
  };
}

/** Committed + rolled back transactions of database `name` so far (pg_stat_database). */
export async function transactionCount(adminUrl: string, name: string): Promise<number> {
  return withAdmin(adminUrl, async (c) => {
    const r = await c.query<{ n: string }>(
      'select xact_commit + xact_rollback as n from pg_stat_database where datname = $1',
      [name],
    );
    return Number(r.rows[0]?.n ?? NaN);
  });
}

/**
 * Pids of the PostgreSQL backends connected to database `name`, read from their process titles
 * (`postgres: [cluster: ]<user> <database> <client> <state>`), synchronously, so that their CPU
 * time can be counted around a measurement.
 */
export function backendPids(name: string): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  const needle = ` ${name} `;
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${e}/cmdline`, 'latin1');
    } catch {
      continue;
    }
    if (cmd.startsWith('postgres: ') && cmd.replace(/\0/g, ' ').includes(needle)) out.push(Number(e));
  }
  return out;
}
