// `npm run migrate-to-postgres` end to end, run as an operator runs it (a child process configured
// by the environment): a gateway on SQLite with sub-accounts, cards, usage, pool keys and objects
// is stopped and copied into a fresh PostgreSQL schema; a gateway started there with the same
// master key serves the same keys, balances and objects, and new rows get new ids. Also the
// refusals (a non-empty target, a wrong MASTER_KEY, a gateway still running on the SQLite file, no
// POSTGRES_DSN), the report's numbers, and the verification that finds a tampered copy.
// Runs in the `sqlite` project only: the source is SQLite whatever the project, and the target is
// a schema of this file's PostgreSQL database (skipped without a server).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { foldKey } from '../../src/accounts/account-rules.js';
import { openSqliteSource } from '../../src/cli/sqlite-source.js';
import { verifyCopy } from '../../src/cli/verify-copy.js';
import { openStore, type Store } from '../../src/store/store.js';
import { call, removeDir, ROOT_KEY, startGateway, TEST_STORE, type TestGateway } from '../support/gateway.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { fileOf, KEY_A, KEY_B, startTenants, type Tenants } from '../support/tenants.js';
import { createTestDatabase, postgresTestRun, type TestDatabase } from '../support/test-databases.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const silent = pino({ level: 'silent' });

/** The state tables and their keys (row order of a dump). */
const TABLES = {
  upstream_keys: ['id'],
  accounts: ['id'],
  credit_cards: ['id'],
  ledger: ['id'],
  usage_records: ['request_id'],
  usage_daily: ['account_id', 'day', 'model'],
  objects: ['id'],
} as const;
type Table = keyof typeof TABLES;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The command as an operator runs it: its own process, configured only by `env`. */
function migrate(env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/migrate-to-postgres.ts'], {
      cwd: REPO,
      env: { PATH: process.env['PATH'] ?? '', TZ: 'UTC', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString('utf8')));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Every row of the state tables, in key order. */
async function dump(store: Store): Promise<Record<Table, unknown[]>> {
  const out = {} as Record<Table, unknown[]>;
  for (const [table, keys] of Object.entries(TABLES) as Array<[Table, readonly string[]]>) {
    let q = store.db.selectFrom(table).selectAll();
    for (const k of keys) q = q.orderBy(k as 'id');
    out[table] = await q.execute();
  }
  return out;
}

async function withStore<T>(
  choice: Parameters<typeof openStore>[0],
  fn: (s: Store) => Promise<T>,
): Promise<T> {
  const store = await openStore(choice, silent);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** Rows per table as the report's table lines give them. */
function reportedRows(stdout: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of stdout.matchAll(/^ {2}(\w+) +([\d,]+) rows {2}\d+\.\d s$/gm)) {
    out[m[1]!] = Number(m[2]!.replaceAll(',', ''));
  }
  return out;
}

/** The DSN with a password, to prove it is never printed (the test server trusts its clients). */
function withPassword(dsn: string, password: string): string {
  const url = new URL(dsn);
  if (url.password === '') url.password = password;
  return url.toString();
}

let t: Tenants | undefined;
let mock: MockUpstream | undefined;
const gateways: TestGateway[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const g of gateways.splice(0)) await g.stop();
  await t?.stop();
  await mock?.close();
  for (const d of dirs.splice(0)) removeDir(d);
  t = undefined;
  mock = undefined;
});

/** A stopped SQLite gateway with two sub-accounts, cards, usage, two pool keys and objects. */
async function sqliteDeployment(): Promise<{
  t: Tenants;
  xDna: unknown;
  xKeys: unknown;
  kept: string;
  gone: string;
  masterKey: string;
}> {
  // POSTGRES_DSN empty: SQLite in either project (the source of the copy).
  const tenants = await startTenants({ env: { POSTGRES_DSN: '' } });
  t = tenants;
  const alice = tenants.client('alice');
  const bobby = tenants.client('bobby');
  await alice.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
  const stream = await bobby.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'stream' }],
    stream: true,
  });
  for await (const chunk of stream) void chunk;
  const kept = await alice.files.create({ file: await fileOf('{"a":1}\n'), purpose: 'user_data' });
  const gone = await bobby.files.create({ file: await fileOf('bye'), purpose: 'assistants' });
  await bobby.files.delete(gone.id);
  expect(
    (await call(tenants.gw, '/x-users/alice', { method: 'PUT', body: { CreditGranted: 12.5 } })).status,
  ).toBe(200);
  expect(
    (await call(tenants.gw, '/x-users/bobby', { method: 'PUT', body: { CreditGranted: -3 } })).status,
  ).toBe(200);
  const xDna = await (await call(tenants.gw, '/x-dna')).json();
  const xKeys = await (await call(tenants.gw, '/x-keys')).json();
  await tenants.gw.stop();
  const masterKey = readFileSync(join(tenants.gw.dataDir, 'master.key'), 'utf8').trim();
  return { t: tenants, xDna, xKeys, kept: kept.id, gone: gone.id, masterKey };
}

const hasPostgres = postgresTestRun() !== undefined;

describe.runIf(TEST_STORE === 'sqlite')('migrate-to-postgres', () => {
  it.runIf(hasPostgres)(
    'copies a stopped SQLite deployment; a gateway on PostgreSQL serves the same keys, balances and objects',
    async () => {
      const src = await sqliteDeployment();
      const db: TestDatabase = await createTestDatabase();
      const password = `pw-${randomBytes(6).toString('hex')}`;
      // The key the gateway generated into DATA_DIR, found there as the gateway finds it.
      const run = await migrate({ DATA_DIR: src.t.gw.dataDir, POSTGRES_DSN: withPassword(db.dsn, password) });
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);

      // Exactly the same rows, ids included, on both sides.
      const source = await withStore({ kind: 'sqlite', dataDir: src.t.gw.dataDir }, dump);
      const target = await withStore({ kind: 'postgres', connection: db.connection }, dump);
      expect(target).toEqual(source);
      // The lookup keys (migration 0009) came along, and are the fold of each Name and E-mail.
      type Named = { name: string; email: string; name_key: string; email_key: string };
      for (const a of target.accounts as Named[])
        expect([a.name_key, a.email_key], a.name).toEqual([foldKey(a.name), foldKey(a.email)]);
      expect(source.objects.map((o) => (o as { id: string }).id).sort()).toEqual([src.gone, src.kept].sort());

      // The report: one line per table with its rows, the totals, what was verified.
      const rows = reportedRows(run.stdout);
      for (const table of Object.keys(TABLES) as Table[])
        expect(rows[table], table).toBe(source[table].length);
      const total = Object.values(rows).reduce((s, n) => s + n, 0);
      expect(run.stdout).toContain(`row counts: equal in ${Object.keys(rows).length} tables (${total} rows)`);
      expect(run.stdout).toContain(`accounts: ${source.accounts.length} equal (`);
      expect(run.stdout).toContain('upstream keys: 2 equal (');
      expect(run.stdout).toContain(`${join(src.t.gw.dataDir, 'master.key')}; 2 upstream keys decrypt`);
      expect(run.stdout).toMatch(/^committed: [\d,]+ rows copied and verified in \d+\.\d s$/m);
      const maxId = (table: Table): number =>
        Math.max(0, ...source[table].map((r) => (r as { id: number }).id));
      expect(run.stdout).toContain(
        `sequences continue at: accounts ${maxId('accounts') + 1}, credit_cards ${maxId('credit_cards') + 1}`,
      );
      // Nothing secret in the output.
      for (const secret of [password, src.masterKey, KEY_A, KEY_B, ROOT_KEY, src.t.key('alice')]) {
        expect(run.stdout + run.stderr).not.toContain(secret);
      }

      // A gateway on PostgreSQL with the same master key (and a DATA_DIR of its own): the same
      // accounts and keys, and requests that work with the same sub-account and pool keys.
      const dataDir = mkdtempSync(join(tmpdir(), 'proxyxai-migrated-'));
      dirs.push(dataDir);
      const gw = await startGateway(
        {
          OPENAI_API_BASE: src.t.mock.url,
          POSTGRES_DSN: db.dsn,
          MASTER_KEY: src.masterKey,
          FOLLOW_INTERVAL_MS: '3600000',
        },
        { dataDir },
      );
      gateways.push(gw);
      expect(await (await call(gw, '/x-dna')).json()).toEqual(src.xDna);
      // UpdatedAt moves when the stopping gateway writes the keys' counters.
      const keys = (list: unknown): unknown =>
        (list as Array<Record<string, unknown>>).map(({ UpdatedAt: _, ...k }) => k);
      expect(keys(await (await call(gw, '/x-keys')).json())).toEqual(keys(src.xKeys));
      const alice = gw.client(src.t.key('alice'));
      const before = src.t.mock.requests.length;
      const r = await alice.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'after the move' }],
      });
      expect(r.object).toBe('chat.completion');
      expect([KEY_A, KEY_B]).toContain(src.t.mock.requests[before]?.key);
      // The object is still alice's, on the pool key that holds it (another organisation's key
      // would not find it upstream), and still nobody else's.
      expect((await alice.files.retrieve(src.kept)).id).toBe(src.kept);
      await expect(gw.client(src.t.key('bobby')).files.retrieve(src.kept)).rejects.toMatchObject({
        status: 404,
      });
      await expect(alice.files.retrieve(src.gone)).rejects.toMatchObject({ status: 404 });

      // New cards and ledger rows take ids after the copied ones (the sequences were moved).
      expect((await call(gw, '/x-users/alice', { method: 'PUT', body: { CreditGranted: 1 } })).status).toBe(
        200,
      );
      await gw.stop();
      const after = await withStore({ kind: 'postgres', connection: db.connection }, dump);
      const ids = (rows: unknown[]): number[] => rows.map((row) => (row as { id: number }).id);
      expect(Math.max(...ids(after.credit_cards))).toBeGreaterThan(maxId('credit_cards'));
      expect(Math.max(...ids(after.ledger))).toBeGreaterThan(maxId('ledger'));
      expect(after.usage_records.length).toBeGreaterThan(source.usage_records.length);
    },
    90_000,
  );

  it.runIf(hasPostgres)(
    'refuses a wrong MASTER_KEY and a non-empty target, writing nothing; a refused run can be repeated',
    async () => {
      const src = await sqliteDeployment();
      const db = await createTestDatabase();
      const env = { DATA_DIR: src.t.gw.dataDir, POSTGRES_DSN: db.dsn };
      const counts = (): Promise<number[]> =>
        withStore({ kind: 'postgres', connection: db.connection }, async (s) =>
          Promise.all(
            (Object.keys(TABLES) as Table[]).map(async (table) =>
              Number(
                (
                  await s.db
                    .selectFrom(table)
                    .select((eb) => eb.fn.countAll<number>().as('n'))
                    .executeTakeFirstOrThrow()
                ).n,
              ),
            ),
          ),
        );

      const wrong = await migrate({ ...env, MASTER_KEY: randomBytes(32).toString('hex') });
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toContain(
        'migrate-to-postgres: refused: 2 of 2 upstream keys do not decrypt with the master key from MASTER_KEY',
      );
      expect(wrong.stdout).not.toContain('committed');
      expect(await counts()).toEqual([0, 0, 0, 0, 0, 0, 0]);

      const right = await migrate({ ...env, MASTER_KEY: src.masterKey });
      expect(right.code, right.stderr).toBe(0);
      const copied = await counts();
      expect(copied.every((n) => n > 0)).toBe(true);

      const again = await migrate({ ...env, MASTER_KEY: src.masterKey });
      expect(again.code).toBe(1);
      expect(again.stderr).toMatch(
        /^migrate-to-postgres: refused: the target PostgreSQL postgres@[^ ]+ \(search_path s_\w+\) is not empty \(accounts 3 rows, /m,
      );
      expect(await counts()).toEqual(copied);
    },
    90_000,
  );

  it('refuses while a gateway has the SQLite file open', async () => {
    mock = await startMockUpstream();
    const gw = await startGateway({ OPENAI_API_BASE: mock.url, POSTGRES_DSN: '' });
    gateways.push(gw);
    dirs.push(gw.dataDir);
    // The source is looked at before the target is reached.
    const run = await migrate({ DATA_DIR: gw.dataDir, POSTGRES_DSN: 'postgres://nobody@127.0.0.1:1/none' });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      `migrate-to-postgres: refused: ${join(gw.dataDir, 'proxyxai.db')} is in use by another process ` +
        '(is the gateway still running on it?): stop the gateway',
    );
    // The gateway was not disturbed.
    expect((await call(gw, '/x-keys')).status).toBe(200);
  });

  it('refuses without POSTGRES_DSN, and without a SQLite store', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'proxyxai-migrate-'));
    dirs.push(dir);
    const noDsn = await migrate({ DATA_DIR: dir });
    expect(noDsn.code).toBe(2);
    expect(noDsn.stderr).toContain('migrate-to-postgres: POSTGRES_DSN is not set');
    const noFile = await migrate({
      DATA_DIR: dir,
      POSTGRES_DSN: 'postgres://nobody:secret-pw@127.0.0.1:1/none?sslmode=disable',
    });
    expect(noFile.code).toBe(1);
    expect(noFile.stderr).toContain(
      `migrate-to-postgres: refused: no SQLite store at ${join(dir, 'proxyxai.db')}`,
    );
    expect(noFile.stderr).not.toContain('secret-pw');
    const bad = await migrate({ DATA_DIR: dir, POSTGRES_DSN: 'postgres://u:secret-pw@h/db?nonsense=1' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('unknown parameter "nonsense"');
    expect(bad.stderr).not.toContain('secret-pw');
  });

  it.runIf(hasPostgres)(
    'the verification names what differs between the SQLite store and a copy',
    async () => {
      const src = await sqliteDeployment();
      // An E-mail holding a NUL (SQLite keeps it, the copy stores U+FFFD), and so its key: not a
      // difference.
      const nul = 'bo\u0000bby@example.com';
      await withStore({ kind: 'sqlite', dataDir: src.t.gw.dataDir }, (s) =>
        s.db
          .updateTable('accounts')
          .set({ email: nul, email_key: foldKey(nul) })
          .where('name', '=', 'bobby')
          .execute(),
      );
      const db = await createTestDatabase();
      const run = await migrate({ DATA_DIR: src.t.gw.dataDir, POSTGRES_DSN: db.dsn });
      expect(run.code, run.stderr).toBe(0);
      const alice = src.t.account('alice').id;
      const source = openSqliteSource(src.t.gw.dataDir);
      const target = await openStore({ kind: 'postgres', connection: db.connection }, silent);
      try {
        const tables = source.tables.map((tb) => tb.name);
        const now = Date.now();
        expect((await verifyCopy(source.db, target.db, tables, now)).differences).toEqual([]);
        // Bands of ledger sums smaller than a range and than the store: the same answer.
        expect((await verifyCopy(source.db, target.db, tables, now, 1)).differences).toEqual([]);
        // A card balance changed, a usage row lost, a pool key's ciphertext altered.
        const card = await target.db
          .selectFrom('credit_cards')
          .select(['id', 'balance'])
          .where('account_id', '=', alice)
          .where('expires_at', '>', now)
          .orderBy('id')
          .executeTakeFirstOrThrow();
        await target.db
          .updateTable('credit_cards')
          .set({ balance: card.balance - 7 })
          .where('id', '=', card.id)
          .execute();
        const usage = await target.db
          .selectFrom('usage_records')
          .select('request_id')
          .where('cost', '>', 0)
          .orderBy('request_id')
          .executeTakeFirstOrThrow();
        await target.db.deleteFrom('usage_records').where('request_id', '=', usage.request_id).execute();
        await target.db
          .updateTable('upstream_keys')
          .set({ ciphertext: 'v1.AAAA' })
          .where('id', '=', 1)
          .execute();
        // A ledger row of alice's altered (her Σ ledger, and the table's).
        const entry = await target.db
          .selectFrom('ledger')
          .select(['id', 'amount'])
          .where('account_id', '=', alice)
          .orderBy('id')
          .executeTakeFirstOrThrow();
        await target.db
          .updateTable('ledger')
          .set({ amount: entry.amount + 3 })
          .where('id', '=', entry.id)
          .execute();
        // An account's lookup key that no longer matches its E-mail: it could not be found by it.
        await target.db
          .updateTable('accounts')
          .set({ email_key: 'someone@else.example' })
          .where('id', '=', alice)
          .execute();
        const n = source.count('usage_records');
        const ledgerLine = new RegExp(
          `^account ${alice}: ledger (-?\\d+) in SQLite, (-?\\d+) in PostgreSQL$`,
        );
        for (const band of [2, 200_000]) {
          const v = await verifyCopy(source.db, target.db, tables, now, band);
          const line = v.differences.find((d) => ledgerLine.test(d));
          const [, was, now_] = ledgerLine.exec(line ?? '') ?? [];
          expect(Number(now_) - Number(was), line).toBe(3);
          expect(v.differences).toEqual(
            expect.arrayContaining([expect.stringMatching(/^ledger Σ amount: /)]),
          );
        }
        const v = await verifyCopy(source.db, target.db, tables, now);
        expect(v.differences).toEqual(
          expect.arrayContaining([
            `usage_records: ${n} rows in SQLite, ${n - 1} in PostgreSQL`,
            expect.stringMatching(
              new RegExp(`^account ${alice}: balance \\d+ in SQLite, \\d+ in PostgreSQL$`),
            ),
            'upstream key 1: fingerprint or ciphertext differs',
            `account ${alice}: email_key ${foldKey(src.t.account('alice').email)} in SQLite, someone@else.example in PostgreSQL`,
            expect.stringMatching(/^usage_records Σ cost: \d+ in SQLite, \d+ in PostgreSQL$/),
          ]),
        );
        expect(v.differences.join('\n')).not.toContain('v1.');
      } finally {
        await target.close();
        await source.close();
      }
    },
  );
});
