// The batched writer: one transaction per flush, nothing lost when a flush fails. One contract
// for every store backend present (SQLite; PostgreSQL when the run has a server) and every sink.
import { sql } from 'kysely';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { newRootAccount } from '../../src/accounts/load-accounts.js';
import type { BatchSink } from '../../src/store/batch-sink.js';
import { StateWriter } from '../../src/store/state-writer.js';
import type { Store } from '../../src/store/store.js';
import { sinksOf, storeBackends, type OpenedStore } from '../support/stores.js';
import { NO_LOG_DETAIL } from '../../src/store/batch-sink.js';

describe.each(storeBackends())('$name store', (backend) => {
  let opened: OpenedStore;
  let store: Store;
  beforeEach(async () => {
    opened = await backend.open();
    store = opened.store;
  });
  afterEach(async () => {
    await opened.dispose();
  });

  describe.each(sinksOf())('%s', (_name, makeSink) => {
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
      // Every column a distinct value, so a column written into another's place shows.
      const row = {
        request_id: 'req_1',
        account_id: 1,
        model: 'm',
        path: '/v1/x',
        day: '2026-01-01',
        prompt_tokens: 11,
        cached_tokens: 3,
        completion_tokens: 13,
        cost: 7,
        status: 200,
        outcome: 'completed',
        attempts: 2,
        usage_source: 'upstream',
        ...NO_LOG_DETAIL,
        created_at: 1_700_000_000_000,
      };
      writer.addUsage(row);
      writer.addUsage(row);
      await writer.flush();
      const stored = await store.db.selectFrom('usage_records').selectAll().execute();
      expect(stored).toHaveLength(1);
      expect(
        Object.fromEntries(
          Object.entries(stored[0] ?? {}).map(([k, v]) => [k, typeof v === 'bigint' ? Number(v) : v]),
        ),
      ).toEqual(row);
    });

    it('adds usage rows into the per-day aggregate, column by column', async () => {
      const writer = new StateWriter(sink, pino({ level: 'silent' }), {
        flushIntervalMs: 1000,
        statsInterval: 1000,
      });
      const base = {
        account_id: 4,
        model: 'gpt-x',
        path: '/v1/x',
        day: '2026-02-03',
        cached_tokens: 0,
        status: 200,
        outcome: 'completed',
        attempts: 1,
        usage_source: 'upstream',
        ...NO_LOG_DETAIL,
        created_at: 0,
      };
      writer.addUsage({ ...base, request_id: 'a', prompt_tokens: 5, completion_tokens: 7, cost: 100 });
      writer.addUsage({ ...base, request_id: 'b', prompt_tokens: 50, completion_tokens: 70, cost: 1000 });
      await writer.flush();
      writer.addUsage({ ...base, request_id: 'c', prompt_tokens: 500, completion_tokens: 700, cost: 10000 });
      await writer.flush();
      const daily = await store.db
        .selectFrom('usage_daily')
        .selectAll()
        .where('account_id', '=', 4)
        .execute();
      expect(
        daily.map((d) => [
          d.day,
          d.model,
          Number(d.requests),
          Number(d.cost),
          Number(d.prompt_tokens),
          Number(d.completion_tokens),
        ]),
      ).toEqual([['2026-02-03', 'gpt-x', 3, 11100, 555, 777]]);
    });

    it('writes every row of a batch larger than one multi-row insert, in order and intact', async () => {
      const writer = new StateWriter(makeSink(store), pino({ level: 'silent' }), {
        flushIntervalMs: 1000,
        statsInterval: 1000,
      });
      const n = 70; // two statements of 32 rows and 6 single rows
      for (let i = 0; i < n; i++) {
        writer.addUsage({
          request_id: `req_${String(i).padStart(3, '0')}`,
          account_id: 7,
          model: `m${i % 3}`,
          path: '/v1/chat/completions',
          day: '2026-03-04',
          prompt_tokens: i,
          cached_tokens: i % 2,
          completion_tokens: 2 * i,
          cost: 10 + i,
          status: 200,
          outcome: 'completed',
          attempts: 1 + (i % 3),
          usage_source: 'upstream',
          ...NO_LOG_DETAIL,
          created_at: 1000 + i,
        });
        writer.addLedger({
          account_id: 7,
          kind: 'usage',
          amount: -(10 + i),
          request_id: `req_${String(i).padStart(3, '0')}`,
          note: `m${i % 3}`,
          created_at: 1000 + i,
        });
      }
      await writer.flush();
      const usage = await store.db.selectFrom('usage_records').selectAll().orderBy('request_id').execute();
      expect(usage).toHaveLength(n);
      usage.forEach((u, i) => {
        expect([
          u.request_id,
          u.model,
          Number(u.prompt_tokens),
          Number(u.cached_tokens),
          Number(u.completion_tokens),
          Number(u.cost),
          u.attempts,
          Number(u.created_at),
        ]).toEqual([
          `req_${String(i).padStart(3, '0')}`,
          `m${i % 3}`,
          i,
          i % 2,
          2 * i,
          10 + i,
          1 + (i % 3),
          1000 + i,
        ]);
      });
      const ledger = await store.db
        .selectFrom('ledger')
        .selectAll()
        .where('account_id', '=', 7)
        .orderBy('id')
        .execute();
      expect(ledger.map((l) => [l.request_id, Number(l.amount), l.note, Number(l.created_at)])).toEqual(
        Array.from({ length: n }, (_, i) => [
          `req_${String(i).padStart(3, '0')}`,
          -(10 + i),
          `m${i % 3}`,
          1000 + i,
        ]),
      );
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
});
