/**
 * Opens the embedded store: the SQLite database (better-sqlite3, WAL) under DATA_DIR, wrapped in
 * Kysely so domain code speaks one query language on every backend, then runs migrations.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import SqliteDatabase, {
  sqliteDriverPackage,
  type SqliteConnection,
  type SqliteStatement,
} from './driver.js';
import { Kysely, Migrator, SqliteDialect, type SqliteDatabase as SqliteDialectDatabase } from 'kysely';
import { migrationProvider, type DialectCaps } from '../migrations.js';
import type { Database } from '../schema.js';
import type { Store } from '../store.js';
import { createSqliteBatchSink, inlineRunner, SQLITE_BATCH_STATEMENTS } from './batch-sink.js';
import { SqliteWriteThread } from './write-thread.js';

export const sqliteCaps: DialectCaps = {
  autoId: (c) => c.primaryKey().autoIncrement(),
  bigint: 'integer',
  // SQLite compares text bytewise (BINARY) by default: nothing to add.
  text: 'text',
};

/**
 * Kysely's SQLite driver prepares every query anew; the batch writer runs the same few statements
 * thousands of times, so prepared statements are cached by SQL text (bounded, oldest evicted).
 * better-sqlite3 statements are reusable as long as one is not iterated while re-run, which
 * Kysely's driver never does (it uses `all`/`run`, and `iterate` only for streams).
 */
function withStatementCache(sqlite: SqliteConnection, max = 256): SqliteDialectDatabase {
  const cache = new Map<string, SqliteStatement>();
  return {
    close: () => sqlite.close(),
    prepare(sql: string) {
      let stmt = cache.get(sql);
      if (stmt === undefined) {
        stmt = sqlite.prepare(sql);
        if (cache.size >= max) cache.delete(cache.keys().next().value as string);
        cache.set(sql, stmt);
      }
      return stmt;
    },
  };
}

export async function openSqliteStore(dataDir: string, writeThread = true): Promise<Store> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = join(dataDir, 'proxyxai.db');
  const sqlite = new SqliteDatabase(file);
  sqlite.pragma('journal_mode = WAL');
  // NORMAL is durable across process crashes in WAL mode; only an OS crash can lose the last commit.
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('busy_timeout = 5000');
  sqlite.pragma('foreign_keys = ON');
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
  const migrator = new Migrator({ db, provider: migrationProvider(sqliteCaps) });
  const { error } = await migrator.migrateToLatest();
  if (error !== undefined) {
    await db.destroy();
    throw error instanceof Error ? error : new Error(String(error));
  }
  // The batched writes run on a thread of their own, on a second connection (after the
  // migrations), also on one core: the kernel then preempts a long flush instead of the event loop
  // waiting for all of it. Pinned to one core the thread costs 10–15 MB and some CPU for a shorter
  // tail (BENCHMARKS.md, "Round two: the event-loop reading"). `false` writes on the main
  // connection.
  const runner = writeThread
    ? new SqliteWriteThread({
        file,
        driver: sqliteDriverPackage,
        base: new URL('./driver.js', import.meta.url).href,
        statements: SQLITE_BATCH_STATEMENTS,
      })
    : inlineRunner(sqlite);
  return {
    db,
    batchSink: createSqliteBatchSink(runner),
    dialect: 'sqlite',
    location: file,
    // One process owns the file; no instance registry.
    instances: undefined,
    shared: undefined,
    async ping() {
      try {
        sqlite.prepare('select 1').get();
        return true;
      } catch {
        return false;
      }
    },
    async close() {
      await runner.close();
      await db.destroy();
    },
  };
}
