/**
 * Fresh, isolated PostgreSQL storage for the tests of one file. The file gets one database of
 * its own (created on first use, ~0.3 s); each store or gateway gets a fresh schema in it
 * (milliseconds), reached through the DSN's `search_path`. The file's `afterAll`
 * (file-setup.ts) drops the database with FORCE, so a gateway a failing test never
 * stopped cannot keep it alive; the run's global teardown drops whatever is still left.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { parsePostgresDsn, type PostgresConnection } from '../../src/store/postgres/dsn.js';
import { createDatabase, databaseUrl, dropDatabases, type PostgresTestRun } from './postgres.js';

export interface TestDatabase {
  /** The file's database. */
  readonly database: string;
  /** This store's schema in it. */
  readonly schema: string;
  /** POSTGRES_DSN of the schema (URL form, with search_path). */
  readonly dsn: string;
  readonly connection: PostgresConnection;
}

/** This project's PostgreSQL run, or undefined when the tests have no server. */
export function postgresTestRun(): PostgresTestRun | undefined {
  return inject('postgresTest') ?? undefined;
}

/** The database of this test file, once created. */
let fileDatabase: Promise<string> | undefined;

export async function createTestDatabase(): Promise<TestDatabase> {
  const run = postgresTestRun();
  if (run === undefined) throw new Error('no PostgreSQL server for the tests (see test/support/postgres.ts)');
  fileDatabase ??= createDatabase(run);
  const database = await fileDatabase;
  const schema = `s_${randomBytes(5).toString('hex')}`;
  const url = databaseUrl(run.adminUrl, database);
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query(`create schema ${schema}`);
  } finally {
    await client.end().catch(() => undefined);
  }
  const dsn = `${url}&search_path=${schema}`;
  const parsed = parsePostgresDsn(dsn);
  if (!parsed.ok) throw new Error(parsed.problems.join('; '));
  return { database, schema, dsn, connection: parsed.connection };
}

/** Drops this file's database (its afterAll), whatever is still connected to it. */
export async function dropFileDatabases(): Promise<void> {
  const run = postgresTestRun();
  const pending = fileDatabase;
  fileDatabase = undefined;
  if (run === undefined || pending === undefined) return;
  const name = await pending.catch(() => undefined);
  if (name !== undefined) await dropDatabases(run.adminUrl, [name]);
}
