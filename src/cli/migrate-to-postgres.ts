/**
 * `npm run migrate-to-postgres` (or `node dist/cli/migrate-to-postgres.js`): copies the embedded
 * SQLite store of DATA_DIR into the empty PostgreSQL database of POSTGRES_DSN, verifies the copy
 * and reports it, in plain lines for the person running it. Configured like the gateway: the same
 * loader reads the same variables (DATA_DIR, POSTGRES_DSN in either form, MASTER_KEY, LOG_LEVEL).
 *
 * Exit status: 0 copied, verified and committed; 1 refused or failed (no row was written to the
 * target); 2 invalid configuration; 3 the verification found differences (rolled back: no row was
 * written either). The DSN's password and the keys are never printed.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import type pino from 'pino';
import { ConfigError, loadConfig, type Config } from '../config/config.js';
import { createSecrets, resolveMasterKey, type Secrets } from '../keys/secrets.js';
import { createLogger } from '../observability/logger.js';
import { describeConnection } from '../store/postgres/dsn.js';
import type { Database } from '../store/schema.js';
import { openStore, StoreStartupError, type Store } from '../store/store.js';
import { copyIntoPostgres, VerificationError, type CopyResult } from './copy-to-postgres.js';
import { openSqliteSource, RefusedError, type SqliteSource } from './sqlite-source.js';

const NAME = 'migrate-to-postgres';

const out = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
const fail = (line: string): void => {
  process.stderr.write(`${NAME}: ${line}\n`);
};
const num = (n: number): string => n.toLocaleString('en-US');
const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/**
 * The store's log lines (a lost connection, DSN parameters ignored) as plain lines on stderr:
 * people read this output, not a log collector.
 */
function plainLines(): pino.DestinationStream {
  const labels: Record<number, string> = { 20: 'debug', 30: 'note', 40: 'warning', 50: 'error', 60: 'error' };
  const standard = new Set(['level', 'time', 'pid', 'hostname', 'service', 'msg']);
  return {
    write(line: string) {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        const extra = Object.fromEntries(Object.entries(entry).filter(([k]) => !standard.has(k)));
        const tail = Object.keys(extra).length === 0 ? '' : ` ${JSON.stringify(extra)}`;
        const label = labels[Number(entry['level'])] ?? 'note';
        fail(`${label}: ${String(entry['msg'] ?? '')}${tail}`);
      } catch {
        fail(line.trimEnd());
      }
    },
  };
}

interface KeyCheck {
  readonly checked: number;
  readonly failed: number;
}

/**
 * Upstream keys are encrypted under MASTER_KEY, and their fingerprints (like account keys') are
 * HMACs peppered by it: a key that decrypts and hashes back to its fingerprint proves the master
 * key is the one the gateway used. Nothing decrypted leaves this function.
 */
async function checkMasterKey(db: Kysely<Database>, secrets: Secrets): Promise<KeyCheck> {
  let checked = 0;
  let failed = 0;
  let last = Number.MIN_SAFE_INTEGER;
  for (;;) {
    const rows = await db
      .selectFrom('upstream_keys')
      .select(['id', 'key_hash', 'ciphertext'])
      .where('id', '>', last)
      .orderBy('id')
      .limit(1_000)
      .execute();
    if (rows.length === 0) return { checked, failed };
    for (const r of rows) {
      checked++;
      try {
        if (!secrets.equal(secrets.hash(secrets.decrypt(r.ciphertext)), r.key_hash)) failed++;
      } catch {
        failed++;
      }
    }
    last = rows.at(-1)!.id;
  }
}

/** Without upstream keys, the root key of INIT_USERS (when set) is the only other witness. */
async function rootMatches(
  db: Kysely<Database>,
  secrets: Secrets,
  config: Config,
): Promise<boolean | undefined> {
  if (config.initUsers === undefined) return undefined;
  const root = await db.selectFrom('accounts').select('key_hash').where('is_root', '=', 1).executeTakeFirst();
  if (root === undefined) return undefined;
  return secrets.equal(secrets.hash(config.initUsers.key), root.key_hash);
}

/**
 * The master key the gateway used, as the gateway finds it (MASTER_KEY, else DATA_DIR/master.key),
 * checked against the store; refuses when it is missing or provably another one.
 */
async function masterKeyOf(
  config: Config,
  source: SqliteSource,
): Promise<{ readonly checked: string; readonly advice: string }> {
  const keyFile = join(config.dataDir, 'master.key');
  if (config.masterKeyHex === undefined && !existsSync(keyFile)) {
    // resolveMasterKey would generate a new key here, one nothing in the store was written with.
    throw new RefusedError(
      `MASTER_KEY is not set and ${keyFile} does not exist: set MASTER_KEY to the key the gateway used ` +
        '(the upstream keys are encrypted under it and the account keys fingerprinted with it)',
    );
  }
  const master = resolveMasterKey(config.masterKeyHex, config.dataDir);
  const from = master.source.kind === 'env' ? 'MASTER_KEY' : keyFile;
  const advice =
    master.source.kind === 'env'
      ? 'the same MASTER_KEY'
      : `the master key of ${keyFile} (the same DATA_DIR, or MASTER_KEY set to its contents)`;
  const secrets = createSecrets(master.key);
  const keys = await checkMasterKey(source.db, secrets);
  if (keys.failed > 0) {
    throw new RefusedError(
      `${num(keys.failed)} of ${num(keys.checked)} upstream keys do not decrypt with the master key from ${from}: ` +
        'the store was written under another one. Set MASTER_KEY to the key the gateway used ' +
        '(or keep its DATA_DIR/master.key); nothing was copied',
    );
  }
  if (keys.checked > 0) {
    return {
      checked: `${from}; ${num(keys.checked)} upstream keys decrypt and match their fingerprints`,
      advice,
    };
  }
  const root = await rootMatches(source.db, secrets, config);
  const why =
    root === true
      ? 'no upstream keys to check it on, and the root key of INIT_USERS matches the stored one'
      : root === false
        ? 'no upstream keys to check it on, and the root key of INIT_USERS does NOT match the stored one ' +
          '(another master key, or INIT_USERS changed since)'
        : 'no upstream keys to check it on (it must be the one the gateway used)';
  return { checked: `${from}; ${why}`, advice };
}

function report(result: CopyResult, started: number, masterKeyAdvice: string): void {
  const v = result.verification;
  const rows = v.counts.reduce((s, c) => s + c.target, 0);
  out('verified');
  out(`  row counts: equal in ${v.counts.length} tables (${num(rows)} rows)`);
  out(
    `  accounts: ${num(v.accounts)} equal (balance of live cards, credit_used, credit_granted, requests, Σ ledger, key)`,
  );
  out(`  upstream keys: ${num(v.upstreamKeys)} equal (fingerprint, ciphertext, status)`);
  out(
    '  usage totals: equal (Σ cost and tokens of usage_records, Σ cost and requests of usage_daily, Σ reserved)',
  );
  if (result.nulReplaced > 0) {
    out(
      `  ${num(result.nulReplaced)} text values held a NUL character, stored as U+FFFD (as the gateway does)`,
    );
  }
  out(`committed: ${num(rows)} rows copied and verified in ${secs(Date.now() - started)}`);
  out(`next: start the gateway with the same POSTGRES_DSN and ${masterKeyAdvice}; keep DATA_DIR as a backup`);
}

async function run(): Promise<number> {
  const started = Date.now();
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (err: unknown) {
    if (err instanceof ConfigError) {
      fail(err.message);
      return 2;
    }
    throw err;
  }
  if (config.store.kind !== 'postgres') {
    fail(
      'POSTGRES_DSN is not set: it names the PostgreSQL database to copy into ' +
        '(DATA_DIR names the directory of the SQLite store to copy from)',
    );
    return 2;
  }
  let source: SqliteSource | undefined;
  let target: Store | undefined;
  let committed = false;
  // Ctrl-C (or a stop): PostgreSQL rolls the transaction back when this process's connection
  // closes with it; the SQLite file is closed first, as a normal end does.
  const interrupt = (signal: NodeJS.Signals, status: number) => (): void => {
    source?.closeNow();
    if (!committed) fail(`interrupted (${signal}): nothing was committed, no row was written to the target`);
    process.exit(status);
  };
  const onSigint = interrupt('SIGINT', 130);
  const onSigterm = interrupt('SIGTERM', 143);
  process.once('SIGINT', onSigint);
  process.once('SIGTERM', onSigterm);
  try {
    // The source first: a wrong DATA_DIR is named before its master key is looked for.
    source = openSqliteSource(config.dataDir);
    out('copying the SQLite store into PostgreSQL');
    out(`  from: SQLite ${source.file} (schema ${source.schemaVersion})`);
    out(`  to: PostgreSQL ${describeConnection(config.store.connection)}`);
    const master = await masterKeyOf(config, source);
    out(`  master key: ${master.checked}`);
    target = await openStore(config.store, createLogger(config.logLevel, plainLines()));
    out('copying in one transaction on the target');
    const result = await copyIntoPostgres(source, target, {
      onTable: (t) => out(`  ${t.table.padEnd(16)} ${num(t.rows).padStart(12)} rows  ${secs(t.ms)}`),
      onProgress: (table, done, total) => out(`  ${table} … ${num(done)} of ${num(total)} rows`),
    });
    committed = true;
    out(
      `  sequences continue at: ${result.sequences.map((s) => `${s.table} ${s.next}`).join(', ') || 'none'}`,
    );
    report(result, started, master.advice);
    return 0;
  } catch (err: unknown) {
    if (err instanceof RefusedError) {
      fail(`refused: ${err.message}`);
      return 1;
    }
    if (err instanceof StoreStartupError) {
      fail(err.message);
      return 1;
    }
    if (err instanceof VerificationError) {
      fail('the copy differs from the SQLite store; rolled back, no row was written to the target:');
      for (const line of err.verification.differences) fail(`  ${line}`);
      return 3;
    }
    const e = err as { message?: unknown; code?: unknown };
    const why = typeof e.message === 'string' ? e.message : String(err);
    const code = typeof e.code === 'string' ? ` (${e.code})` : '';
    fail(`failed: ${why}${code}; rolled back, no row was written to the target`);
    return 1;
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
    await target?.close().catch(() => undefined);
    await source?.close().catch(() => undefined);
  }
}

run().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    fail(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = 1;
  },
);
