/**
 * The PostgreSQL server the tests use, and the databases they create on it. Nothing here imports
 * vitest, so the config (which decides whether the `postgres` project runs) can use it too.
 *
 * Every database a run creates is named `proxyxai_test_h<host>p<pid>_<run>_<project>_<random>`
 * (host: a hash of this machine's name; pid: the vitest process). Each test file drops the one it
 * created when it ends (test/support/file-setup.ts); the run's global teardown drops every
 * database with its prefix (the safety net for a crashed worker). A run killed outright leaves its
 * databases behind: the next run on this machine drops those whose vitest process is gone. No
 * other database is ever touched.
 *
 * PROXYXAI_TEST_POSTGRES: the server's URL as an administrator that may CREATE DATABASE
 * (default postgres://postgres@127.0.0.1:5432/postgres, trust auth); `off` skips PostgreSQL.
 */
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import pg from 'pg';

/** What the global setup hands to the test files of a project (vitest `provide` / `inject`). */
export interface PostgresTestRun {
  readonly adminUrl: string;
  /** Every database of this run and project starts with it. */
  readonly prefix: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    /** null when no PostgreSQL server is reachable: the postgres backend is skipped. */
    postgresTest: PostgresTestRun | null;
  }
}

export const POSTGRES_TEST_NOTICE_TAG = '[postgres tests]';

export function adminUrlFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const raw = env['PROXYXAI_TEST_POSTGRES'];
  if (raw === 'off') return undefined;
  return raw !== undefined && raw !== '' ? raw : 'postgres://postgres@127.0.0.1:5432/postgres';
}

/** Undefined when the server answers `select 1` within the timeout, else why not. */
export async function unreachableReason(adminUrl: string, timeoutMs = 3_000): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: timeoutMs });
  // A connection lost after the probe must not become an unhandled 'error' event.
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('select 1');
    return undefined;
  } catch (err: unknown) {
    return err instanceof Error ? err.message : String(err);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** `proxyxai_test_h<host>p<pid>_`, <host> and <pid> parsed back by the sweep. */
const NAME = /^proxyxai_test_h([0-9a-f]{4})p(\d+)_[0-9a-f]{6}_[a-z0-9]*_/;

function hostTag(): string {
  return createHash('sha256').update(hostname()).digest('hex').slice(0, 4);
}

export function newRunPrefix(project: string): string {
  const name = project.replace(/[^a-z0-9]/gi, '').toLowerCase();
  return `proxyxai_test_h${hostTag()}p${process.pid}_${randomBytes(3).toString('hex')}_${name}_`;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err: unknown) {
    // EPERM: the process exists (another user's).
    return (err as { code?: unknown }).code === 'EPERM';
  }
}

/**
 * Drops the test databases a run on this machine left behind when it was killed (its vitest
 * process is gone). Databases of live runs and of other machines are left alone.
 */
export async function dropAbandonedDatabases(adminUrl: string): Promise<string[]> {
  const names = await withAdmin(adminUrl, async (c) => {
    const r = await c.query<{ datname: string }>(
      "select datname from pg_database where starts_with(datname, 'proxyxai_test_h')",
    );
    return r.rows.map((row) => row.datname);
  });
  const host = hostTag();
  const abandoned = names.filter((n) => {
    const m = NAME.exec(n);
    return m !== null && m[1] === host && !alive(Number(m[2]));
  });
  await dropDatabases(adminUrl, abandoned);
  return abandoned;
}

async function withAdmin<T>(adminUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Creates an empty database `<prefix><random>`; returns its name. */
export async function createDatabase(run: PostgresTestRun): Promise<string> {
  const name = `${run.prefix}${randomBytes(5).toString('hex')}`;
  await withAdmin(run.adminUrl, (c) => c.query(`create database ${pg.escapeIdentifier(name)}`));
  return name;
}

/** Drops the named databases, even while something is still connected to them (FORCE). */
export async function dropDatabases(adminUrl: string, names: readonly string[]): Promise<void> {
  if (names.length === 0) return;
  await withAdmin(adminUrl, async (c) => {
    for (const name of names)
      await c.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`);
  });
}

/** Drops every database whose name starts with `prefix` (this run's, and only this run's). */
export async function dropDatabasesWithPrefix(adminUrl: string, prefix: string): Promise<string[]> {
  if (!NAME.test(prefix) || !prefix.endsWith('_')) throw new Error(`not a test run prefix: ${prefix}`);
  const names = await withAdmin(adminUrl, async (c) => {
    const r = await c.query<{ datname: string }>(
      'select datname from pg_database where starts_with(datname, $1) order by datname',
      [prefix],
    );
    return r.rows.map((row) => row.datname);
  });
  await dropDatabases(adminUrl, names);
  return names;
}

/** The gateway's POSTGRES_DSN for database `name` on the admin URL's server and login. */
export function databaseUrl(adminUrl: string, name: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  if (!url.searchParams.has('sslmode')) url.searchParams.set('sslmode', 'disable');
  return url.toString();
}
