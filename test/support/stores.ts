/**
 * The store backends present for this run, for contract suites: `describe.each(storeBackends())`.
 * SQLite always; PostgreSQL when the run has a server (each store in a fresh schema). A
 * backend opens a store, can reopen it on the same data (a restart), and disposes of it all.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { BatchSink } from '../../src/store/batch-sink.js';
import { createKyselyBatchSink } from '../../src/store/kysely-batch-sink.js';
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

export interface StoreBackend {
  readonly name: 'sqlite' | 'postgres';
  open(): Promise<OpenedStore>;
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

export const sqliteBackend: StoreBackend = {
  name: 'sqlite',
  async open() {
    const dir = mkdtempSync(join(tmpdir(), 'proxyxai-store-'));
    return opened({ kind: 'sqlite', dataDir: dir }, () => {
      rmSync(dir, { recursive: true, force: true });
      return Promise.resolve();
    });
  },
};

export const postgresBackend: StoreBackend = {
  name: 'postgres',
  async open() {
    const db = await createTestDatabase();
    return opened({ kind: 'postgres', connection: db.connection }, () => Promise.resolve());
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
