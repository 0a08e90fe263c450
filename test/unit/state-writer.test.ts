// The batched writer: one transaction per flush, nothing lost when a flush fails.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { newRootAccount } from '../../src/accounts/load-accounts.js';
import { openSqliteStore, type Store } from '../../src/store/open-store.js';
import { StateWriter } from '../../src/store/state-writer.js';
import type { BatchSink } from '../../src/store/batch-sink.js';
import { createKyselyBatchSink } from '../../src/store/kysely-batch-sink.js';

let dir: string;
let store: Store;
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'proxyxai-writer-'));
  store = await openSqliteStore(dir);
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

// The same contract for every sink: the embedded store's own and the portable Kysely one.
const sinks: Array<[string, (s: Store) => BatchSink]> = [
  ['sqlite sink', (s) => s.batchSink],
  ['kysely sink', (s) => createKyselyBatchSink(s.db)],
];

describe.each(sinks)('%s', (_name, makeSink) => {
  let sink: BatchSink;
  beforeEach(() => {
    sink = makeSink(store);
  });

  it('keeps accounts, ledger and usage rows queued when a flush fails, and writes them on the next one', async () => {
    const writer = new StateWriter(sink, pino({ level: 'silent' }), {
      flushIntervalMs: 1000,
      statsInterval: 1000,
    });
    const account = newRootAccount(1, 'r@example.com', 'hash', 'partial', 0, {
      day: '2026-01-01',
      month: '2026-01',
    });
    account.cards = [{ amount: 5, balance: 5, grantedAt: 0, expiresAt: 10 }];
    writer.markDirty(account);
    writer.addLedger({
      account_id: 1,
      kind: 'grant',
      amount: 5,
      request_id: null,
      note: null,
      created_at: 0,
    });
    await sql`alter table ledger rename to ledger_away`.execute(store.db);
    await expect(writer.flush()).rejects.toThrow();
    await sql`alter table ledger_away rename to ledger`.execute(store.db);
    // Memory moved on meanwhile without marking the account again.
    account.cards = [{ amount: 5, balance: 3, grantedAt: 0, expiresAt: 10 }];
    account.creditUsed = 2;
    await writer.flush();
    const row = await store.db.selectFrom('accounts').selectAll().executeTakeFirstOrThrow();
    expect(Number(row.credit_used)).toBe(2);
    const cards = await store.db.selectFrom('credit_cards').selectAll().execute();
    expect(cards.map((c) => Number(c.balance))).toEqual([3]);
    expect(await store.db.selectFrom('ledger').selectAll().execute()).toHaveLength(1);
  });

  it('writes nothing twice: a usage record per request id', async () => {
    const writer = new StateWriter(sink, pino({ level: 'silent' }), {
      flushIntervalMs: 1000,
      statsInterval: 1000,
    });
    const row = {
      request_id: 'req_1',
      account_id: 1,
      model: 'm',
      path: '/v1/x',
      day: '2026-01-01',
      prompt_tokens: 1,
      cached_tokens: 0,
      completion_tokens: 1,
      cost: 7,
      status: 200,
      outcome: 'completed',
      attempts: 1,
      usage_source: 'upstream',
      created_at: 0,
    };
    writer.addUsage(row);
    writer.addUsage(row);
    await writer.flush();
    expect(await store.db.selectFrom('usage_records').selectAll().execute()).toHaveLength(1);
  });

  it('never writes a deleted account back, even when a late settlement marks it dirty', async () => {
    const writer = new StateWriter(sink, pino({ level: 'silent' }), {
      flushIntervalMs: 1000,
      statsInterval: 1000,
    });
    const account = newRootAccount(7, 'g@example.com', 'ghost-hash', 'partial', 0, {
      day: '2026-01-01',
      month: '2026-01',
    });
    writer.markDirty(account);
    await writer.flush();
    writer.markDeleted(account);
    writer.markDirty(account);
    await writer.flush();
    expect(await store.db.selectFrom('accounts').selectAll().where('id', '=', 7).execute()).toHaveLength(0);
  });

  it('a batch that deletes an account and reuses its name in a new one is written', async () => {
    const writer = new StateWriter(sink, pino({ level: 'silent' }), {
      flushIntervalMs: 1000,
      statsInterval: 1000,
    });
    const old = newRootAccount(1, 'x@example.com', 'h1', 'p', 0, { day: '2026-01-01', month: '2026-01' });
    writer.markDirty(old);
    await writer.flush();
    writer.markDeleted(old);
    writer.markDirty(
      newRootAccount(2, 'x@example.com', 'h2', 'p', 0, { day: '2026-01-01', month: '2026-01' }),
    );
    await writer.flush();
    const rows = await store.db.selectFrom('accounts').select(['id', 'name']).execute();
    expect(rows).toEqual([{ id: 2, name: 'root' }]);
  });
});
