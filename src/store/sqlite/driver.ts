/**
 * The SQLite driver, chosen once, when this module loads, by the Node-API version of the runtime.
 *
 * Two majors of better-sqlite3 are installed under two names and exactly one is ever loaded:
 * - `better-sqlite3` (12): a classic V8 addon, compiled on install. On Node >= 24.19 its
 *   node::ObjectWrap destructor removes an environment cleanup hook, and a Statement or Database
 *   finalised by a garbage collection outside an entered context aborts the process
 *   (`Assertion failed: (env) != nullptr` in node::RemoveEnvironmentCleanupHook).
 * - `better-sqlite3-napi` (13, an npm alias, optional: npm skips it where Node < 22): a Node-API
 *   addon, prebuilt binaries inside the package, not affected. It is built for Node-API 10, which
 *   Node has from 22.14 on; Node 20 stops at 9 and crashes when it loads it.
 * So 13 wherever Node-API 10 is there (Node >= 22.14, 24, 26), 12 elsewhere (Node 20, early 22).
 */
import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';

/** Same API in both majors (13 ships no types of its own). */
export type SqliteConnection = BetterSqlite3.Database;
export type SqliteStatement = BetterSqlite3.Statement;

/** The Node-API version better-sqlite3 13 is compiled for. */
const NAPI_BUILD_NEEDS = 10;

export function sqliteDriverFor(napiVersion: string | undefined): 'better-sqlite3' | 'better-sqlite3-napi' {
  return Number(napiVersion) >= NAPI_BUILD_NEEDS ? 'better-sqlite3-napi' : 'better-sqlite3';
}

/** The package this process loaded. */
export const sqliteDriverPackage = sqliteDriverFor(process.versions['napi']);

function load(): typeof BetterSqlite3 {
  try {
    return createRequire(import.meta.url)(sqliteDriverPackage) as typeof BetterSqlite3;
  } catch (err: unknown) {
    if ((err as { code?: unknown }).code !== 'MODULE_NOT_FOUND') throw err;
    throw new Error(
      `${sqliteDriverPackage} is not installed (node_modules installed on another Node version, ` +
        `or without optional dependencies?): run npm install with Node ${process.versions.node}`,
      { cause: err },
    );
  }
}

const SqliteDatabase = load();
export default SqliteDatabase;
