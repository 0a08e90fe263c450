/**
 * The PostgreSQL connection pool (node-postgres), built from the parsed DSN, and the one-sentence
 * explanation of a failed connection. Every setting is passed explicitly, so pg's own PG*
 * environment defaults never change what the config says.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import type { Logger } from 'pino';
import { describeConnection, type PostgresConnection } from './dsn.js';

/** PostgreSQL type OIDs that come back as text by default. */
const INT8_OID = 20;
const NUMERIC_OID = 1700;

export interface PoolOptions {
  /** Most connections: the writer's flush, the key counters and a few reads run at once. */
  readonly max?: number;
  /** A statement running longer than this is cancelled by the server (no flush may hang forever). */
  readonly statementTimeoutMs?: number;
}

/**
 * int8 (money, epoch ms, counts) and numeric (sums of int8) are parsed to JS numbers, as SQLite
 * returns them: money is integer micro-dollars, exact far beyond any balance (2^53 µ$ ≈ $9e9).
 * The parsers belong to this pool only: nothing global (`pg.types`) is changed.
 */
function numberTypes(): pg.CustomTypesConfig {
  const types = new pg.TypeOverrides();
  types.setTypeParser(INT8_OID, 'text', Number);
  types.setTypeParser(NUMERIC_OID, 'text', Number);
  return types;
}

function tls(c: PostgresConnection): false | ConnectionOptions {
  switch (c.sslMode) {
    case 'disable':
    case 'allow':
    case 'prefer':
      return false;
    case 'require':
      // libpq's `require` encrypts without checking the certificate.
      return { rejectUnauthorized: false };
    case 'verify-ca':
    case 'verify-full': {
      const ca = c.sslRootCert === undefined ? undefined : readFileSync(c.sslRootCert, 'utf8');
      return {
        rejectUnauthorized: true,
        ...(ca !== undefined && { ca }),
        // verify-ca trusts any name on a certificate the CA signed.
        ...(c.sslMode === 'verify-ca' && { checkServerIdentity: () => undefined }),
      };
    }
  }
}

export function createPool(c: PostgresConnection, log: Logger, opts: PoolOptions = {}): pg.Pool {
  const pool = new pg.Pool({
    host: c.host,
    port: c.port,
    database: c.database,
    user: c.user,
    ...(c.password !== undefined && { password: c.password }),
    ssl: tls(c),
    application_name: c.applicationName,
    ...(c.searchPath !== undefined && { options: `-c search_path=${c.searchPath}` }),
    connectionTimeoutMillis: c.connectTimeoutMs,
    statement_timeout: opts.statementTimeoutMs ?? 30_000,
    // A transaction left open by a bug must not hold row locks for ever.
    idle_in_transaction_session_timeout: 60_000,
    keepAlive: true,
    max: opts.max ?? 10,
    idleTimeoutMillis: 30_000,
    types: numberTypes(),
  });
  // An idle connection that the server drops (restart, failover) is reported here; without a
  // listener the pool's 'error' event would end the process. The next query reconnects.
  pool.on('error', (err) => {
    log.warn({ err: { message: err.message }, store: describeConnection(c) }, 'PostgreSQL connection lost');
  });
  // A connection checked out between two statements (inside a transaction) has no listener of
  // the pool's: a reset there would be an unhandled 'error' and end the process. The statement
  // in progress or the next one fails instead, and the pool drops the broken connection.
  pool.on('connect', (client) => {
    client.on('error', (err) => {
      log.debug({ err: { message: err.message } }, 'PostgreSQL connection error while checked out');
    });
  });
  return pool;
}

/** Why a connection failed, in words, with where it went (never the password). */
export function connectFailure(c: PostgresConnection, err: unknown): string {
  const where = `PostgreSQL at ${c.host}:${c.port}, database "${c.database}", user "${c.user}"`;
  return `cannot connect to ${where}: ${reason(c, err)}`;
}

function reason(c: PostgresConnection, err: unknown): string {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const message = typeof e.message === 'string' ? e.message : String(err);
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused (is the server running and listening on that port?)';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `unknown host "${c.host}"`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'host unreachable';
    case '28P01':
    case '28000':
      // The server's own words ("password authentication failed for user …", "no pg_hba.conf entry …").
      return `login refused: ${message}`;
    case '3D000':
      return `the database does not exist (${message})`;
  }
  if (/timeout/i.test(message)) return `no answer within ${c.connectTimeoutMs / 1000} s (connect_timeout)`;
  return message;
}
