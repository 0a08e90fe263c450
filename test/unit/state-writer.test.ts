// The batched writer: one transaction per flush, nothing lost when a flush fails.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import pino from 'pino';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { newRootAccount } from '../../src/accounts/load-accounts.js';
import { openSqliteStore, type Store } from '../../src/store/open-store.js';
import { StateWriter } from '../../src/store/state-writer.js';

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

it('keeps accounts, ledger and usage rows queued when a flush fails, and writes them on the next one', async () => {
  const writer = new StateWriter(store.db, pino({ level: 'silent' }), {
    flushIntervalMs: 1000,
    statsInterval: 1000,
  });
  const account = newRootAccount(1, 'r@example.com', 'hash', 'partial', 0, {
    day: '2026-01-01',
    month: '2026-01',
  });
  account.cards = [{ amount: 5, balance: 5, grantedAt: 0, expiresAt: 10 }];
  writer.markDirty(account);
  writer.addLedger({ account_id: 1, kind: 'grant', amount: 5, request_id: null, note: null, created_at: 0 });
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
  const writer = new StateWriter(store.db, pino({ level: 'silent' }), {
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
