/**
 * Opens the PostgreSQL store: a node-postgres pool wrapped in Kysely (the same queries as on
 * SQLite), a connection check that turns an unreachable server or a refused login into one
 * sentence within the connect timeout, then the shared migrations with PostgreSQL's capabilities.
 */
import { Kysely, Migrator, PostgresDialect, sql } from 'kysely';
import type pg from 'pg';
import type { Logger } from 'pino';
import { migrationProvider, type DialectCaps } from '../migrations.js';
import type { Database } from '../schema.js';
import { StoreStartupError, type Store } from '../store.js';
import { createPostgresDeltaSink } from './delta-sink.js';
import { createPostgresLeases } from './leases.js';
import { createPostgresBatchSink } from './batch-sink.js';
import { connectFailure, createPool, type PoolOptions } from './driver.js';
import { describeConnection, type PostgresConnection } from './dsn.js';
import { createPostgresInstances } from './instances.js';

export const postgresCaps: DialectCaps = {
  // BY DEFAULT, not ALWAYS: account ids are allocated by the registry and inserted explicitly.
  autoId: (c) => c.primaryKey().generatedByDefaultAsIdentity(),
  bigint: 'bigint',
  // Bytewise, as SQLite's BINARY: the database's locale must not reorder ids, days or model names.
  text: sql`text collate "C"`,
};

/** Longest a readiness probe waits for the server (the pool's connect timeout is longer). */
const PING_TIMEOUT_MS = 2_000;

export async function openPostgresStore(
  connection: PostgresConnection,
  log: Logger,
  opts: PoolOptions = {},
): Promise<Store> {
  let pool: pg.Pool;
  try {
    pool = createPool(connection, log, opts);
  } catch (err: unknown) {
    // An unreadable sslrootcert file, for instance.
    throw new StoreStartupError(connectFailure(connection, err), { cause: err });
  }
  let schema: string | null;
  try {
    const client = await pool.connect();
    try {
      schema = (await client.query<{ schema: string | null }>('select current_schema() as schema')).rows[0]!
        .schema;
    } finally {
      client.release();
    }
  } catch (err: unknown) {
    await pool.end().catch(() => undefined);
    throw new StoreStartupError(connectFailure(connection, err), { cause: err });
  }
  if (schema === null) {
    // Every schema of search_path is missing: the migrations would have nowhere to create tables.
    await pool.end().catch(() => undefined);
    throw new StoreStartupError(
      `PostgreSQL at ${connection.host}:${connection.port}, database "${connection.database}": ` +
        `no schema of search_path "${connection.searchPath ?? ''}" exists (create it first)`,
    );
  }
  if (connection.ignored.length > 0) {
    log.info(
      { ignored: connection.ignored },
      'POSTGRES_DSN parameters accepted and not applied (times are epoch ms; days and months follow TZ)',
    );
  }
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  // Kysely looks for its migration tables in every schema unless told which one: another
  // application's (or another gateway's) in the same database must not count as ours.
  const migrator = new Migrator({
    db,
    provider: migrationProvider(postgresCaps),
    migrationTableSchema: schema,
  });
  const { error } = await migrator.migrateToLatest();
  if (error !== undefined) {
    await db.destroy();
    // Typically a missing privilege (CREATE on the schema): the server's words say which.
    const why = error instanceof Error ? error.message : String(error);
    throw new StoreStartupError(`migrating PostgreSQL ${describeConnection(connection)} failed: ${why}`, {
      cause: error,
    });
  }
  return {
    db,
    batchSink: createPostgresBatchSink(db),
    dialect: 'postgres',
    location: `PostgreSQL ${describeConnection(connection)}`,
    instances: createPostgresInstances(db),
    shared: {
      leases: createPostgresLeases(db),
      deltaSink: (instanceId, clock) => createPostgresDeltaSink(db, instanceId, clock),
    },
    async ping() {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), PING_TIMEOUT_MS);
      });
      const probe = sql`select 1`.execute(db).then(
        () => true,
        () => false,
      );
      try {
        return await Promise.race([probe, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      // Kysely ends the pool it was given once it has used it (it has: the migrations ran).
      await db.destroy();
      if (!pool.ended) await pool.end();
    },
  };
}
