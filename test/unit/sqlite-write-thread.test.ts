// The embedded store's batched writes run on a thread of their own: the event loop keeps turning
// while a big batch is written, a batch that fails is rolled back whole, and the main
// connection reads what the thread committed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { newRootAccount } from '../../src/accounts/load-accounts.js';
import { NO_LOG_DETAIL, type AccountRow, type Batch, type UsageRow } from '../../src/store/batch-sink.js';
import { INDEXED_ACCOUNT_COLUMNS } from '../../src/store/sqlite/batch-sink.js';
import { accountRow } from '../../src/store/state-writer.js';
import { openSqliteStore } from '../../src/store/sqlite/open-store.js';
import type { Store } from '../../src/store/store.js';

let dir: string;
let store: Store;

function usage(n: number, from = 0): UsageRow[] {
  return Array.from({ length: n }, (_, i) => ({
    request_id: `req_${String(from + i).padStart(7, '0')}`,
    account_id: 1,
    model: 'gpt-4o-mini',
    path: '/v1/chat/completions',
    day: '2026-11-27',
    prompt_tokens: 10,
    cached_tokens: 0,
    completion_tokens: 5,
    cost: 7,
    status: 200,
    outcome: 'completed',
    attempts: 1,
    usage_source: 'upstream',
    created_at: 1_800_000_000_000 + from + i,
    ...NO_LOG_DETAIL,
  }));
}

function batch(rows: UsageRow[]): Batch {
  return { accounts: [], cards: new Map(), deleted: [], ledger: [], usage: rows, daily: [], objects: [] };
}

async function count(): Promise<number> {
  const r = await store.db
    .selectFrom('usage_records')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirst();
  return Number(r?.n);
}

describe.each([
  ['on the writer thread', true],
  ['on the main connection (one core)', false],
] as const)('%s', (_name, threaded) => {
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'proxyxai-thread-'));
    store = await openSqliteStore(dir, threaded);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes a big batch that the main connection then reads (and, on the thread, the loop turns meanwhile)', async () => {
    let turns = 0;
    let done = false;
    const spin = (): void => {
      if (done) return;
      turns++;
      setImmediate(spin);
    };
    setImmediate(spin);
    await store.batchSink.write(batch(usage(30_000)));
    done = true;
    // Written on the main thread, the whole transaction runs before the first turn.
    if (threaded) expect(turns).toBeGreaterThan(0);
    else expect(turns).toBe(0);
    expect(await count()).toBe(30_000);
  });

  it('rolls a failing batch back whole: nothing of it is written, and the next batch is', async () => {
    const bad = usage(100, 1_000);
    // The same request id twice is ignored by design; a NOT NULL column left null fails the batch.
    (bad[60] as unknown as Record<string, unknown>)['model'] = null;
    await expect(store.batchSink.write(batch(bad))).rejects.toThrow(/NOT NULL/);
    expect(await count()).toBe(0);
    await store.batchSink.write(batch(usage(10, 5_000)));
    expect(await count()).toBe(10);
  });

  it('writes every column of the packed rows exactly, nulls and repeated strings included', async () => {
    const rows: UsageRow[] = usage(70, 9_000).map((u, i) => ({
      ...u,
      model: i % 3 === 0 ? 'gpt-4o' : 'gpt-4o-mini',
      outcome: i % 5 === 0 ? 'refused' : 'completed',
      cost: 2 ** 52 + i,
      stream: i % 2,
      latency_ms: i % 4 === 0 ? null : i,
      ttfb_ms: i % 4 === 1 ? null : 2 * i,
      client_ip: i % 2 === 0 ? null : `10.0.0.${i}`,
      error_code: i % 5 === 0 ? 'insufficient_quota' : null,
    }));
    const ledger = rows.map((u, i) => ({
      account_id: u.account_id,
      kind: i % 2 === 0 ? 'usage' : 'refund',
      amount: -u.cost,
      request_id: i === 3 ? null : u.request_id,
      note: i % 7 === 0 ? `note "${i}" \u2028 ✓` : null,
      created_at: u.created_at,
    }));
    await store.batchSink.write({ ...batch(rows), ledger });
    const got = await store.db.selectFrom('usage_records').selectAll().orderBy('request_id').execute();
    expect(got).toEqual(rows);
    const led = await store.db
      .selectFrom('ledger')
      .select(['account_id', 'kind', 'amount', 'request_id', 'note', 'created_at'])
      .orderBy('id')
      .execute();
    expect(led).toEqual(ledger);
  });

  it('updates a known account in place, and upserts it whole when it is new or an indexed column changed', async () => {
    // Fires for every write that assigns key_hash, as the full upsert does and the update in place
    // does not (a trigger "of" a column fires when the column is assigned, whatever its value).
    await sql`create table upserts (n integer)`.execute(store.db);
    await sql`create trigger upserted after update of key_hash on accounts
      begin insert into upserts values (1); end`.execute(store.db);
    const upserts = async (): Promise<number> =>
      Number((await sql<{ n: number }>`select count(*) as n from upserts`.execute(store.db)).rows[0]?.n);
    const period = { day: '2026-11-28', month: '2026-11' };
    const row = (id: number, change: Partial<AccountRow> = {}): AccountRow => ({
      ...accountRow(newRootAccount(id, `${id}@example.com`, `hash-${id}`, 'sk-…abcd', 1_000, period)),
      parent_id: null,
      ...change,
    });
    const write = (rows: AccountRow[]): Promise<void> =>
      store.batchSink.write({ ...batch([]), accounts: rows, cards: new Map(rows.map((r) => [r.id, []])) });
    const stored = async (id: number): Promise<Record<string, unknown>> =>
      (await store.db
        .selectFrom('accounts')
        .select(Object.keys(row(id)) as Array<keyof AccountRow>)
        .where('id', '=', id)
        .executeTakeFirstOrThrow()) as Record<string, unknown>;

    await write([row(5), row(6)]);
    expect(await stored(5)).toEqual(row(5));
    const used = row(5, {
      credit_used: 2 ** 40,
      requests: 9,
      soft_notice_month: '2026-11',
      updated_at: 2_000,
    });
    await write([used, row(6, { status: 0, allow_models: 'gpt-4o' })]);
    expect(await stored(5)).toEqual(used);
    expect(await stored(6)).toEqual(row(6, { status: 0, allow_models: 'gpt-4o' }));
    expect(await upserts()).toBe(0);

    const renamed = row(5, { name: 'Renamed', name_key: 'renamed', key_hash: 'hash-new', parent_id: 6 });
    await write([renamed]);
    expect(await stored(5)).toEqual(renamed);
    expect(await upserts()).toBe(1);
    // The indexes follow: found by the new values, not the old ones.
    const by = async (column: 'name_key' | 'key_hash' | 'parent_id', value: string | number) =>
      (await store.db.selectFrom('accounts').select('id').where(column, '=', value).execute()).map(
        (r) => r.id,
      );
    expect(await by('name_key', 'renamed')).toEqual([5]);
    expect(await by('key_hash', 'hash-new')).toEqual([5]);
    expect(await by('key_hash', 'hash-5')).toEqual([]);
    expect(await by('parent_id', 6)).toEqual([5]);
    expect((await sql<{ r: string }>`pragma integrity_check`.execute(store.db)).rows).toEqual([
      { integrity_check: 'ok' },
    ]);
  });
});

it('updates in place only the account columns no index holds', async () => {
  const dir2 = mkdtempSync(join(tmpdir(), 'proxyxai-thread-'));
  const opened = await openSqliteStore(dir2, false);
  try {
    const r = await sql<{ col: string }>`select distinct ii.name as col from pragma_index_list('accounts') il
      join pragma_index_info(il.name) ii where ii.name <> 'id' order by ii.name`.execute(opened.db);
    expect(r.rows.map((x) => x.col)).toEqual([...INDEXED_ACCOUNT_COLUMNS].sort());
  } finally {
    await opened.close();
    rmSync(dir2, { recursive: true, force: true });
  }
});
