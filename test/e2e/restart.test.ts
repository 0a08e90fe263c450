// A restart loses and changes nothing: every balance, card, ledger row, usage row, per-day
// aggregate and object record is the same before and after, and the gateway answers from it as
// before. On PostgreSQL (the postgres project) also: one instance per database, a graceful stop
// deletes its instance row, a crashed instance's row stops blocking once its heartbeat is stale.
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { openStore, StoreStartupError } from '../../src/store/store.js';
import { STALE_AFTER_MS } from '../../src/store/instances.js';
import { call, ROOT_KEY, startGateway, TEST_STORE, type TestGateway } from '../support/gateway.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { fileOf, startTenants, type Tenants } from '../support/tenants.js';

const TABLES = {
  upstream_keys: 'id',
  accounts: 'id',
  credit_cards: 'id',
  ledger: 'id',
  usage_records: 'request_id',
  usage_daily: ['account_id', 'day', 'model'],
  objects: 'id',
  instances: 'id',
} as const;

/** Every row of every table, in key order, read through a store handle of its own. */
async function dump(gw: TestGateway): Promise<Record<string, unknown[]>> {
  const store = await openStore(gw.app.config.store, pino({ level: 'silent' }));
  try {
    const out: Record<string, unknown[]> = {};
    for (const [table, key] of Object.entries(TABLES)) {
      let q = store.db.selectFrom(table as keyof typeof TABLES).selectAll();
      for (const k of typeof key === 'string' ? [key] : key) q = q.orderBy(k as 'id');
      out[table] = await q.execute();
    }
    return out;
  } finally {
    await store.close();
  }
}

let t: Tenants | undefined;
let mock: MockUpstream | undefined;
const gateways: TestGateway[] = [];
afterEach(async () => {
  for (const g of gateways.splice(0)) await g.stop();
  await t?.stop();
  await mock?.close();
  t = undefined;
  mock = undefined;
});

describe('restart', () => {
  it('keeps every balance, card, ledger row, usage row and object record', async () => {
    t = await startTenants();
    const alice = t.client('alice');
    const bobby = t.client('bobby');
    await alice.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
    });
    const stream = await bobby.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'stream' }],
      stream: true,
    });
    for await (const chunk of stream) void chunk;
    const kept = await alice.files.create({ file: await fileOf('{"a":1}\n'), purpose: 'user_data' });
    const gone = await bobby.files.create({ file: await fileOf('bye'), purpose: 'assistants' });
    await bobby.files.delete(gone.id);
    // A recharge (a new card), a deduction (cards spent, a fee) and a rate change.
    expect(
      (await call(t.gw, '/x-users/alice', { method: 'PUT', body: { CreditGranted: 12.5 } })).status,
    ).toBe(200);
    expect((await call(t.gw, '/x-users/bobby', { method: 'PUT', body: { CreditGranted: -3 } })).status).toBe(
      200,
    );
    const view = async (): Promise<unknown> => (await call(t!.gw, '/x-dna', { key: ROOT_KEY })).json();
    const before = await view();

    await t.gw.stop();
    const stored = await dump(t.gw);
    expect(stored['usage_records']!.length).toBeGreaterThanOrEqual(2);
    expect(stored['objects']!.map((o) => (o as { id: string }).id).sort()).toEqual([gone.id, kept.id].sort());
    expect(stored['credit_cards']!.length).toBeGreaterThanOrEqual(3);
    expect(stored['instances']).toEqual([]);

    await t.restart();
    expect(await view()).toEqual(before);
    await t.gw.stop();
    // Exactly the same rows, ids included: a start reads, it writes nothing.
    expect(await dump(t.gw)).toEqual(stored);

    await t.restart();
    expect((await t.client('alice').files.retrieve(kept.id)).id).toBe(kept.id);
    await expect(t.client('bobby').files.retrieve(kept.id)).rejects.toMatchObject({ status: 404 });
    await expect(t.client('bobby').files.retrieve(gone.id)).rejects.toMatchObject({ status: 404 });
  });
});

describe.runIf(TEST_STORE === 'postgres')('one instance per PostgreSQL database', () => {
  it('refuses a second gateway on the same database, naming the first; the first keeps serving', async () => {
    mock = await startMockUpstream();
    const first = await startGateway({ OPENAI_API_BASE: mock.url });
    gateways.push(first);
    const rows = await first.app.store.db.selectFrom('instances').selectAll().execute();
    expect(rows).toMatchObject([{ pid: process.pid }]);
    const err = await startGateway({ OPENAI_API_BASE: mock.url }, { database: first.database }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StoreStartupError);
    const message = (err as Error).message;
    expect(message).toContain(`another proxyxai instance is running (${rows[0]!.id.slice(0, 8)} on host "`);
    expect(message).toContain(`pid ${process.pid}, last heartbeat 0 s ago) on PostgreSQL postgres@`);
    expect(message).toContain(`search_path ${first.database!.schema}`);
    expect(message).toContain(`more than ${STALE_AFTER_MS / 1000} s old`);
    expect((await call(first, '/x-keys')).status).toBe(200);
    expect(await first.app.store.db.selectFrom('instances').selectAll().execute()).toEqual(rows);
  });

  it('starts again at once after a graceful stop, and after a crash once the heartbeat is stale', async () => {
    mock = await startMockUpstream();
    const gw = await startGateway({ OPENAI_API_BASE: mock.url });
    await gw.stop();
    const again = await gw.restart();
    await again.stop();
    // A crashed instance left its row behind, 5 s old: still alive by the bound, so refused.
    const crashed = { id: 'crashed-instance', host: 'elsewhere', pid: 4242 };
    const store = await openStore(gw.app.config.store, pino({ level: 'silent' }));
    const now = Date.now();
    await store.db
      .insertInto('instances')
      .values({ ...crashed, started_at: now - 60_000, heartbeat_at: now - 5_000 })
      .execute();
    await expect(again.restart()).rejects.toThrow(/crashed- on host "elsewhere", pid 4242/);
    // Its heartbeat ages past the bound: the next start forgets it and runs.
    await store.db
      .updateTable('instances')
      .set({ heartbeat_at: now - STALE_AFTER_MS - 5_000 })
      .execute();
    const third = await again.restart();
    gateways.push(third);
    expect(await store.db.selectFrom('instances').select(['pid', 'host']).execute()).toMatchObject([
      { pid: process.pid },
    ]);
    await store.close();
  });
});
