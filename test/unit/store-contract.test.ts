// What every store backend promises the rest of the gateway: the migrations build the same
// schema (and run again as a no-op), 64-bit money and times come back as exact JS numbers, text
// orders bytewise, its own sink writes any text, and a store shared by processes keeps an
// instance registry with heartbeats. One suite, looped over the backends present.
import { Kysely, PostgresDialect, sql } from 'kysely';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Batch } from '../../src/store/batch-sink.js';
import { claimSoleInstance, joinInstances, type InstanceIdentity } from '../../src/store/instances.js';
import { StoreStartupError } from '../../src/store/store.js';
import { createPostgresBatchSink } from '../../src/store/postgres/batch-sink.js';
import { createPool } from '../../src/store/postgres/driver.js';
import type { Database } from '../../src/store/schema.js';
import { accountRow } from '../../src/store/state-writer.js';
import { newRootAccount } from '../../src/accounts/load-accounts.js';
import { storeBackends, type OpenedStore } from '../support/stores.js';
import { NO_LOG_DETAIL } from '../../src/store/batch-sink.js';

/** The indexes of `table` other than its primary key's, by name. */
async function secondaryIndexes(
  db: Kysely<Database>,
  dialect: 'sqlite' | 'postgres',
  table: string,
): Promise<string[]> {
  const r =
    dialect === 'sqlite'
      ? await sql<{ name: string }>`select name from sqlite_master where type = 'index'
          and tbl_name = ${table} and name not like 'sqlite_autoindex%' order by name`.execute(db)
      : await sql<{
          name: string;
        }>`select indexname as name from pg_indexes where schemaname = current_schema()
          and tablename = ${table} and indexname <> ${table + '_pkey'} order by indexname`.execute(db);
  return r.rows.map((x) => x.name);
}

const TABLES = [
  'upstream_keys',
  'accounts',
  'credit_cards',
  'ledger',
  'usage_records',
  'usage_daily',
  'objects',
  'instances',
  'leases',
] as const;

function emptyBatch(): Batch {
  return { accounts: [], cards: new Map(), deleted: [], ledger: [], usage: [], daily: [], objects: [] };
}

describe.each(storeBackends())('$name store', (backend) => {
  let opened: OpenedStore;
  beforeEach(async () => {
    opened = await backend.open();
  });
  afterEach(async () => {
    await opened.dispose();
  });

  it('migrates every table, and opening again migrates nothing and keeps the rows', async () => {
    const { db } = opened.store;
    for (const t of TABLES) {
      expect(await db.selectFrom(t).selectAll().execute(), t).toEqual([]);
    }
    const migrated = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(db);
    expect(migrated.rows.map((r) => r.name)).toEqual([
      '0001_upstream_keys',
      '0002_accounts_and_money',
      '0003_tenancy',
      '0004_instances',
      '0005_credit_leases',
      '0006_follow_claims',
      '0007_instance_mode',
      '0008_request_log',
      '0009_folded_names',
      '0010_ledger_unindexed_by_account',
    ]);
    await db
      .insertInto('ledger')
      .values({ account_id: 1, kind: 'grant', amount: 5, request_id: null, note: null, created_at: 1 })
      .execute();
    const again = (await opened.reopen()).db;
    expect(
      (await sql<{ n: number }>`select count(*) as n from kysely_migration`.execute(again)).rows,
    ).toEqual([{ n: 10 }]);
    expect(await again.selectFrom('ledger').select(['id', 'amount']).execute()).toEqual([
      { id: 1, amount: 5 },
    ]);
    // Written a row per request and never read by account (0010): no index beside its key.
    expect(await secondaryIndexes(again, opened.store.dialect, 'ledger')).toEqual([]);
    expect(await secondaryIndexes(again, opened.store.dialect, 'usage_records')).toEqual([
      'usage_records_account_time',
      'usage_records_time',
    ]);
  });

  it('numbers auto ids in insertion order and returns 64-bit values as exact numbers', async () => {
    const { db } = opened.store;
    const big = Number.MAX_SAFE_INTEGER;
    for (const amount of [big, -big, 0]) {
      await db
        .insertInto('ledger')
        .values({
          account_id: 2,
          kind: 'k',
          amount,
          request_id: null,
          note: null,
          created_at: 1_900_000_000_000,
        })
        .execute();
    }
    const rows = await db.selectFrom('ledger').select(['id', 'amount', 'created_at']).orderBy('id').execute();
    expect(rows).toEqual([
      { id: 1, amount: big, created_at: 1_900_000_000_000 },
      { id: 2, amount: -big, created_at: 1_900_000_000_000 },
      { id: 3, amount: 0, created_at: 1_900_000_000_000 },
    ]);
    // Sums and counts are numbers too (PostgreSQL returns numeric and int8 for them).
    const sums = await db
      .selectFrom('ledger')
      .select((eb) => [eb.fn.sum<number>('amount').as('total'), eb.fn.countAll<number>().as('n')])
      .executeTakeFirstOrThrow();
    expect(sums).toEqual({ total: 0, n: 3 });
  });

  it('orders and compares text bytewise, whatever the database locale', async () => {
    const { db } = opened.store;
    const models = ['gpt-4o', 'GPT-4o', 'gpt-4o-mini', 'gpt-4.1', 'gpt_4', 'é-model', 'a b'];
    await db
      .insertInto('usage_daily')
      .values(
        models.map((model) => ({
          account_id: 1,
          day: '2026-01-02',
          model,
          requests: 1,
          cost: 1,
          prompt_tokens: 0,
          completion_tokens: 0,
        })),
      )
      .execute();
    const sorted = await db.selectFrom('usage_daily').select('model').orderBy('model').execute();
    expect(sorted.map((r) => r.model)).toEqual(
      [...models].sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : 1)),
    );
    const above = await db
      .selectFrom('usage_daily')
      .select('model')
      .where('model', '>', 'gpt-4o')
      .orderBy('model')
      .execute();
    expect(above.map((r) => r.model)).toEqual(['gpt-4o-mini', 'gpt_4', 'é-model']);
  });

  it('its own sink writes every text, even one holding a NUL, and the rest of the batch with it', async () => {
    const { store } = opened;
    const account = newRootAccount(5, 'n@example.com', 'h', 'p', 0, { day: '2026-01-01', month: '2026-01' });
    account.alias = 'nul\u0000alias';
    const batch = emptyBatch();
    batch.accounts.push(accountRow(account));
    batch.ledger.push({
      account_id: 5,
      kind: 'grant',
      amount: 7,
      request_id: 'r\u0000',
      note: null,
      created_at: 1,
    });
    await store.batchSink.write(batch);
    const row = await store.db.selectFrom('accounts').select(['alias']).executeTakeFirstOrThrow();
    // SQLite keeps the NUL; PostgreSQL text cannot hold one and stores U+FFFD instead.
    expect(['nul\u0000alias', 'nul\uFFFDalias']).toContain(row.alias);
    expect(await store.db.selectFrom('ledger').select(['amount']).execute()).toEqual([{ amount: 7 }]);
  });

  it.runIf(backend.name === 'postgres')(
    'writes a flush of 1,000 usage and ledger rows for 10 accounts in eight round trips',
    async () => {
      const { choice, store } = opened;
      if (choice.kind !== 'postgres') throw new Error('postgres only');
      const statements: string[] = [];
      const db = new Kysely<Database>({
        dialect: new PostgresDialect({ pool: createPool(choice.connection, pino({ level: 'silent' })) }),
        log: (e) => void statements.push(e.query.sql),
      });
      const batch = emptyBatch();
      for (let id = 1; id <= 10; id++) {
        batch.accounts.push(
          accountRow(newRootAccount(id, `${id}@x`, `h${id}`, 'p', 0, { day: 'd', month: 'm' })),
        );
        batch.cards.set(id, [
          { amount: 9, balance: 8, granted_at: 1, expires_at: 2, reference: null },
          { amount: 7, balance: 7, granted_at: 1, expires_at: 3, reference: 'r' },
        ]);
      }
      for (let i = 0; i < 1_000; i++) {
        const account_id = 1 + (i % 10);
        batch.usage.push({
          request_id: `req_${i}`,
          account_id,
          model: 'm',
          path: '/v1/x',
          day: '2026-01-01',
          prompt_tokens: i,
          cached_tokens: 0,
          completion_tokens: 1,
          cost: 3,
          status: 200,
          outcome: 'completed',
          attempts: 1,
          usage_source: 'upstream',
          ...NO_LOG_DETAIL,
          created_at: i,
        });
        batch.ledger.push({
          account_id,
          kind: 'usage',
          amount: -3,
          request_id: `req_${i}`,
          note: 'm',
          created_at: i,
        });
      }
      for (let id = 1; id <= 10; id++) {
        batch.daily.push({
          account_id: id,
          day: '2026-01-01',
          model: 'm',
          requests: 100,
          cost: 300,
          prompt_tokens: 1,
          completion_tokens: 100,
        });
      }
      await createPostgresBatchSink(db).write(batch);
      await db.destroy();
      // BEGIN, upsert accounts, delete their cards, insert cards, ledger, usage, per-day, COMMIT.
      expect(statements).toHaveLength(8);
      expect([statements[0], statements[7]]).toEqual(['begin', 'commit']);
      const count = async (t: 'usage_records' | 'ledger' | 'credit_cards' | 'accounts' | 'usage_daily') =>
        (
          await store.db
            .selectFrom(t)
            .select((eb) => eb.fn.countAll<number>().as('n'))
            .executeTakeFirstOrThrow()
        ).n;
      expect([await count('accounts'), await count('credit_cards'), await count('ledger')]).toEqual([
        10, 20, 1_000,
      ]);
      expect([await count('usage_records'), await count('usage_daily')]).toEqual([1_000, 10]);
    },
  );

  it('answers ping while open', async () => {
    expect(await opened.store.ping()).toBe(true);
  });

  describe('instance registry (stores other processes can reach)', () => {
    const a: InstanceIdentity = { id: 'aaaaaaaa-1', host: 'host-a', pid: 11, mode: 'sole' };
    const b: InstanceIdentity = { id: 'bbbbbbbb-2', host: 'host-b', pid: 22, mode: 'sole' };
    const sole = (others: readonly unknown[]): boolean => others.length === 0;

    it('is offered exactly by the server backend', () => {
      expect(opened.store.instances !== undefined).toBe(backend.name === 'postgres');
    });

    it.runIf(backend.name === 'postgres')(
      'registers one instance, refuses a second while the first beats, and forgets a silent one',
      async () => {
        const liveness = opened.store.instances!;
        expect(await liveness.register(a, 20_000, sole)).toEqual({ registered: true, others: [] });
        const refused = await liveness.register(b, 20_000, sole);
        expect(refused.registered).toBe(false);
        expect(refused.others).toMatchObject([{ id: a.id, host: 'host-a', pid: 11 }]);
        expect(refused.others[0]!.silentMs).toBeLessThan(5_000);
        expect(await liveness.beat(a.id)).toBe(true);
        expect(await liveness.beat(b.id)).toBe(false);
        // A's heartbeat is made 30 s old: dead by a 20 s bound, so B takes its place.
        await opened.store.db
          .updateTable('instances')
          .set((eb) => ({ heartbeat_at: eb('heartbeat_at', '-', 30_000) }))
          .execute();
        expect(await liveness.register(b, 20_000, sole)).toEqual({ registered: true, others: [] });
        expect(await liveness.beat(a.id)).toBe(false);
        await liveness.remove(b.id);
        expect(await opened.store.db.selectFrom('instances').selectAll().execute()).toEqual([]);
      },
    );

    it.runIf(backend.name === 'postgres')(
      'keeps the heartbeat of the claimed instance fresh and deletes its row on stop',
      async () => {
        const { db, instances } = opened.store;
        const heartbeat = await claimSoleInstance(instances!, 'here', pino({ level: 'silent' }), {
          intervalMs: 20,
        });
        const row = () => db.selectFrom('instances').selectAll().executeTakeFirstOrThrow();
        const first = await row();
        expect(first).toMatchObject({ id: heartbeat.self.id, pid: process.pid });
        await expect.poll(async () => (await row()).heartbeat_at).toBeGreaterThan(first.heartbeat_at);
        await heartbeat.stop();
        expect(await db.selectFrom('instances').selectAll().execute()).toEqual([]);
      },
    );

    it.runIf(backend.name === 'postgres')(
      'never mixes an instance running alone with instances sharing the store through Redis',
      async () => {
        const { db, instances } = opened.store;
        const silent = pino({ level: 'silent' });
        // Two sharing instances admit each other; one without Redis is refused beside them.
        const s1 = await joinInstances(instances!, 'db here', silent, { intervalMs: 60_000 });
        const s2 = await joinInstances(instances!, 'db here', silent, { intervalMs: 60_000 });
        expect((await db.selectFrom('instances').select('mode').execute()).map((r) => r.mode)).toEqual([
          'shared',
          'shared',
        ]);
        await expect(claimSoleInstance(instances!, 'db here', silent)).rejects.toThrow(
          /another proxyxai instance is running \(.*\) on db here\. Without REDIS_ADDR/,
        );
        await s1.stop();
        await s2.stop();
        // And the other way round: a sharing instance is refused beside one running alone.
        const alone = await claimSoleInstance(instances!, 'db here', silent, { intervalMs: 60_000 });
        const refusal = await joinInstances(instances!, 'db here', silent).catch((e: unknown) => e);
        expect(refusal).toBeInstanceOf(StoreStartupError);
        expect(String(refusal)).toMatch(
          new RegExp(`running alone \\(without REDIS_ADDR\\) \\(${alone.self.id.slice(0, 8)} on host`),
        );
        expect(String(refusal)).toMatch(/all need REDIS_ADDR/);
        await alone.stop();
        expect(await db.selectFrom('instances').selectAll().execute()).toEqual([]);
      },
    );

    it.runIf(backend.name === 'postgres')('lets only one of two simultaneous registrations in', async () => {
      const liveness = opened.store.instances!;
      const results = await Promise.all([
        liveness.register(a, 20_000, sole),
        liveness.register(b, 20_000, sole),
      ]);
      expect(results.map((r) => r.registered).sort()).toEqual([false, true]);
    });
  });
});
