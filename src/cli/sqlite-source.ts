/**
 * The embedded store (DATA_DIR/proxyxai.db) as the source of `npm run migrate-to-postgres`:
 * opened without the gateway's migrations, its data never changed, held under SQLite's exclusive
 * lock for the whole copy, read in pages by rowid (keyset pagination: memory stays bounded
 * whatever the size of the usage tables). Also a typed Kysely handle on the same connection, so the verification asks
 * the source and the target the same questions.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Kysely, SqliteDialect } from 'kysely';
import SqliteDatabase, { type SqliteConnection, type SqliteStatement } from '../store/sqlite/driver.js';
import { migrations, type DialectCaps } from '../store/migrations.js';
import type { Database } from '../store/schema.js';

/** A reason not to copy, explained in one sentence; nothing was written anywhere. */
export class RefusedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RefusedError';
  }
}

/**
 * Tables of the store that are not copied. `instances` lists the gateway processes running on a
 * database server and their heartbeats: a copied row would make the new database look in use.
 * (On an embedded store it is always empty.) Kysely's own migration tables and SQLite's internal
 * tables are not the gateway's data either; the target has its own from its migrations.
 */
const NOT_COPIED = new Set(['instances']);
const isBookkeeping = (name: string): boolean => name.startsWith('sqlite_') || name.startsWith('kysely_');

/**
 * The order tables are copied and reported in: the brief's state tables first, any other table a
 * later migration adds after them (copied the same way; nothing is left behind silently).
 */
const COPY_ORDER = [
  'accounts',
  'credit_cards',
  'ledger',
  'usage_records',
  'usage_daily',
  'upstream_keys',
  'objects',
];

export interface SourceTable {
  readonly name: string;
  /** Column names in the file's order. */
  readonly columns: readonly string[];
}

/** One page of rows, column-major (one array per column, in `SourceTable.columns` order). */
export interface SourcePage {
  readonly columns: unknown[][];
  readonly rows: number;
  /** The cursor for the next page. */
  readonly lastRowid: number;
}

export interface SqliteSource {
  readonly file: string;
  /** Typed handle on the same (locked, read-only) connection, for the verification. */
  readonly db: Kysely<Database>;
  /** The last migration the file has, e.g. `0004_instances`. */
  readonly schemaVersion: string;
  /** Every table that holds the gateway's state, in copy order. */
  readonly tables: readonly SourceTable[];
  /** The highest id SQLite's AUTOINCREMENT ever handed out, per table (deleted rows included). */
  readonly sequences: ReadonlyMap<string, number>;
  count(table: string): number;
  /** Up to `limit` rows whose rowid is above `afterRowid`, in rowid order. */
  page(table: SourceTable, afterRowid: number, limit: number): SourcePage;
  close(): Promise<void>;
  /** Closes the file at once (on Ctrl-C, before the process exits). */
  closeNow(): void;
}

/** How long to wait for the file's lock (a gateway that is just finishing its stop). */
const LOCK_WAIT_MS = 2_000;

/**
 * Only the names of the migrations are read (to compare versions); their bodies, which use the
 * capabilities, never run here.
 */
const NAMES_ONLY: DialectCaps = { autoId: (c) => c, bigint: 'integer', text: 'text' };

/** `"name"`, for table and column names read from the file itself. */
function quoted(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function sqliteFileOf(dataDir: string): string {
  return join(dataDir, 'proxyxai.db');
}

export function openSqliteSource(dataDir: string): SqliteSource {
  const file = sqliteFileOf(dataDir);
  if (!existsSync(file)) {
    throw new RefusedError(
      `no SQLite store at ${file} (DATA_DIR names the directory that holds proxyxai.db)`,
    );
  }
  // Read-write at the file level, because SQLite takes a write lock only through a writable
  // handle; `query_only` then forbids every change through this connection.
  const sqlite = new SqliteDatabase(file, { fileMustExist: true });
  try {
    sqlite.pragma(`busy_timeout = ${LOCK_WAIT_MS}`);
    // In WAL mode a gateway holds a shared lock on the file for as long as it has it open. With
    // EXCLUSIVE locking the first read below needs the exclusive lock, so it fails while a gateway
    // (or any other process) has the file open, and once it succeeds no gateway can start on the
    // file until this copy ends. The WAL index then lives in this process's memory, so a WAL left
    // by a crashed gateway is read (its committed transactions are part of the data) without
    // touching the shared-memory file.
    sqlite.pragma('locking_mode = EXCLUSIVE');
    sqlite.pragma('query_only = ON');
    try {
      sqlite.prepare('select count(*) from sqlite_master').get();
    } catch (err: unknown) {
      const code = String((err as { code?: unknown }).code ?? '');
      if (code === 'SQLITE_BUSY') {
        throw new RefusedError(
          `${file} is in use by another process (is the gateway still running on it?): ` +
            'stop the gateway, then run this command again',
          { cause: err },
        );
      }
      if (code.startsWith('SQLITE_IOERR') || code === 'SQLITE_READONLY' || code === 'SQLITE_CANTOPEN') {
        // A file the OS lets this user read but not write is opened read-only, and the lock fails.
        throw new RefusedError(
          `cannot lock ${file} (${code}): run this command as the user that runs the gateway ` +
            "(taking SQLite's lock needs write access to the file; no data is changed)",
          { cause: err },
        );
      }
      throw err;
    }
    const schemaVersion = checkSchema(sqlite, file);
    const tables = readTables(sqlite);
    const sequences = readSequences(sqlite);
    return createSource(sqlite, file, schemaVersion, tables, sequences);
  } catch (err: unknown) {
    sqlite.close();
    throw err;
  }
}

/** The file must be at exactly this version's schema: copying does not migrate it. */
function checkSchema(sqlite: SqliteConnection, file: string): string {
  const hasTable = sqlite
    .prepare("select 1 from sqlite_master where type = 'table' and name = 'kysely_migration'")
    .get();
  if (hasTable === undefined) {
    throw new RefusedError(`${file} is not a proxyxai store (it has no kysely_migration table)`);
  }
  const have = (
    sqlite.prepare('select name from kysely_migration order by name').all() as Array<{
      name: string;
    }>
  ).map((r) => r.name);
  const want = Object.keys(migrations(NAMES_ONLY)).sort();
  const newer = have.filter((n) => !want.includes(n));
  if (newer.length > 0) {
    throw new RefusedError(
      `${file} was written by a newer proxyxai (migration ${newer.join(', ')}): ` +
        'run the migrate-to-postgres command of that version',
    );
  }
  const missing = want.filter((n) => !have.includes(n));
  if (missing.length > 0) {
    // Copying an older schema would skip what the newer migrations do to the data; the gateway of
    // this version brings the file up to date on its first start.
    throw new RefusedError(
      `${file} is at an older schema (${have.at(-1) ?? 'none'}; this version expects ${want.at(-1) ?? ''}): ` +
        'start this version of the gateway once on it (without POSTGRES_DSN), stop it, then run this command again',
    );
  }
  return want.at(-1) ?? '';
}

function readTables(sqlite: SqliteConnection): SourceTable[] {
  const names = (
    sqlite.prepare("select name from sqlite_master where type = 'table' order by name").all() as Array<{
      name: string;
    }>
  )
    .map((r) => r.name)
    .filter((n) => !isBookkeeping(n) && !NOT_COPIED.has(n));
  const rank = (n: string): number => {
    const i = COPY_ORDER.indexOf(n);
    return i === -1 ? COPY_ORDER.length : i;
  };
  names.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : 1));
  return names.map((name) => ({
    name,
    columns: (sqlite.pragma(`table_info(${quoted(name)})`) as Array<{ name: string }>).map((c) => c.name),
  }));
}

function readSequences(sqlite: SqliteConnection): Map<string, number> {
  const out = new Map<string, number>();
  // sqlite_sequence exists once any AUTOINCREMENT table has had a row.
  const exists = sqlite
    .prepare("select 1 from sqlite_master where type = 'table' and name = 'sqlite_sequence'")
    .get();
  if (exists === undefined) return out;
  for (const r of sqlite.prepare('select name, seq from sqlite_sequence').all() as Array<{
    name: string;
    seq: number;
  }>) {
    out.set(r.name, Number(r.seq));
  }
  return out;
}

function createSource(
  sqlite: SqliteConnection,
  file: string,
  schemaVersion: string,
  tables: readonly SourceTable[],
  sequences: ReadonlyMap<string, number>,
): SqliteSource {
  // Every table here is a rowid table: the rowid is the cheapest keyset (the table's own b-tree,
  // no index lookups) whatever the table's primary key.
  const pages = new Map<string, SqliteStatement>();
  const pageStatement = (t: SourceTable): SqliteStatement => {
    let stmt = pages.get(t.name);
    if (stmt === undefined) {
      stmt = sqlite
        .prepare(
          `select rowid, ${t.columns.map(quoted).join(', ')} from ${quoted(t.name)} ` +
            'where rowid > ? order by rowid limit ?',
        )
        .raw(true);
      pages.set(t.name, stmt);
    }
    return stmt;
  };
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
  return {
    file,
    db,
    schemaVersion,
    tables,
    sequences,
    count(table) {
      const r = sqlite.prepare(`select count(*) as n from ${quoted(table)}`).get() as { n: number };
      return Number(r.n);
    },
    page(t, afterRowid, limit) {
      const raw = pageStatement(t).all(afterRowid, limit) as unknown[][];
      const columns: unknown[][] = t.columns.map(() => new Array<unknown>(raw.length));
      for (let r = 0; r < raw.length; r++) {
        const row = raw[r]!;
        for (let c = 0; c < columns.length; c++) columns[c]![r] = row[c + 1];
      }
      const last = raw.at(-1);
      return { columns, rows: raw.length, lastRowid: last === undefined ? afterRowid : Number(last[0]) };
    },
    // Kysely closes the connection. Closing is also when SQLite folds a WAL left by a crashed
    // gateway into the file (as the gateway's own clean stop does): the data is unchanged.
    close: () => db.destroy(),
    // Closing removes the empty WAL file that opening the file created; an exit without it would
    // leave that file behind.
    closeNow: () => {
      if (sqlite.open) sqlite.close();
    },
  };
}
