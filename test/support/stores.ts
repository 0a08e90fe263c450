/**
 * The store backends present for this run, for contract suites: `describe.each(storeBackends())`.
 * SQLite always; PostgreSQL when the run has a server (each store in a fresh schema). A
 * backend opens a store, can reopen it on the same data (a restart), and disposes of it all; or
 * opens the data at an older migration first, to test the later ones on rows written before them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kysely, Migrator, PostgresDialect, SqliteDialect } from 'kysely';
import pino from 'pino';
import type { BatchSink } from '../../src/store/batch-sink.js';
import { createKyselyBatchSink } from '../../src/store/kysely-batch-sink.js';
import { migrationProvider, type DialectCaps } from '../../src/store/migrations.js';
import { createPool } from '../../src/store/postgres/driver.js';
import { postgresCaps } from '../../src/store/postgres/open-store.js';
import SqliteDatabase from '../../src/store/sqlite/driver.js';
import { sqliteCaps } from '../../src/store/sqlite/open-store.js';
import { openStore, type Store, type StoreChoice } from '../../src/store/store.js';
import { createTestDatabase, postgresTestRun } from './test-databases.js';

export interface OpenedStore {
  readonly store: Store;
  /** What was opened (to open a second handle on the same data). */
  readonly choice: StoreChoice;
  /** Closes the store and opens it again on the same data. */
  reopen(): Promise<Store>;
  /** Closes the store and removes its data (PostgreSQL: when the test file ends). */
  dispose(): Promise<void>;
}

/** Data at an older schema: `db` writes rows in it, `open` then opens the store on them. */
export interface OlderStore {
  /** The database migrated up to the migration asked for, and no further. */
  readonly db: Kysely<unknown>;
  /** Closes `db` and opens the store on the same data, running the later migrations. */
  open(): Promise<OpenedStore>;
}

export interface StoreBackend {
  readonly name: 'sqlite' | 'postgres';
  open(): Promise<OpenedStore>;
  /** Fresh data migrated up to `migration` (its name, e.g. `0008_request_log`) included. */
  openAt(migration: string): Promise<OlderStore>;
}

const silent = pino({ level: 'silent' });

async function opened(choice: StoreChoice, remove: () => Promise<void>): Promise<OpenedStore> {
  let store = await openStore(choice, silent);
  const o: OpenedStore = {
    choice,
    get store() {
      return store;
    },
    async reopen() {
      await store.close();
      store = await openStore(choice, silent);
      return store;
    },
    async dispose() {
      await store.close();
      await remove();
    },
  };
  return o;
}

async function migratedTo(
  db: Kysely<unknown>,
  caps: DialectCaps,
  migration: string,
  open: () => Promise<OpenedStore>,
  migrationTableSchema?: string,
): Promise<OlderStore> {
  const migrator = new Migrator({
    db,
    provider: migrationProvider(caps),
    ...(migrationTableSchema !== undefined && { migrationTableSchema }),
  });
  const { error } = await migrator.migrateTo(migration);
  if (error !== undefined) {
    await db.destroy();
    throw error instanceof Error ? error : new Error(String(error));
  }
  return {
    db,
    async open() {
      await db.destroy();
      return open();
    },
  };
}

export const sqliteBackend: StoreBackend = {
  name: 'sqlite',
  async open() {
    const dir = mkdtempSync(join(tmpdir(), 'proxyxai-store-'));
    return sqliteAt(dir);
  },
  async openAt(migration) {
    const dir = mkdtempSync(join(tmpdir(), 'proxyxai-store-'));
    const sqlite = new SqliteDatabase(join(dir, 'proxyxai.db'));
    sqlite.pragma('journal_mode = WAL');
    const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database: sqlite }) });
    return migratedTo(db, sqliteCaps, migration, () => sqliteAt(dir));
  },
};

function sqliteAt(dir: string): Promise<OpenedStore> {
  return opened({ kind: 'sqlite', dataDir: dir }, () => {
    rmSync(dir, { recursive: true, force: true });
    return Promise.resolve();
  });
}

export const postgresBackend: StoreBackend = {
  name: 'postgres',
  async open() {
    const db = await createTestDatabase();
    return opened({ kind: 'postgres', connection: db.connection }, () => Promise.resolve());
  },
  async openAt(migration) {
    const test = await createTestDatabase();
    const choice = { kind: 'postgres', connection: test.connection } as const;
    const db = new Kysely<unknown>({
      dialect: new PostgresDialect({ pool: createPool(test.connection, silent) }),
    });
    // In the schema the store's own migrator uses (postgres/open-store.ts).
    return migratedTo(
      db,
      postgresCaps,
      migration,
      () => opened(choice, () => Promise.resolve()),
      test.schema,
    );
  },
};

/** SQLite, and PostgreSQL when this run has a server. */
export function storeBackends(): StoreBackend[] {
  return postgresTestRun() === undefined ? [sqliteBackend] : [sqliteBackend, postgresBackend];
}

/** Every batch sink of a store: its own (the fastest) and the portable Kysely one. */
export function sinksOf(): Array<[string, (s: Store) => BatchSink]> {
  return [
    ['own sink', (s) => s.batchSink],
    ['kysely sink', (s) => createKyselyBatchSink(s.db)],
  ];
}
