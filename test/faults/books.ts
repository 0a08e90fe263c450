/**
 * The books of an embedded store, read straight from its SQLite file (read-only, beside the
 * gateway that may be running on it), and the invariants every account keeps whatever happened:
 * the file is intact, Σ live cards = balance, credit_used + balance = credit granted, Σ ledger =
 * balance, one usage row per request counted, the per-day aggregates equal the usage rows, and
 * no request is billed twice.
 */
import { join } from 'node:path';
import { expect } from 'vitest';
import Database from '../../src/store/sqlite/driver.js';

export interface AccountBooks {
  readonly id: number;
  readonly name: string;
  readonly isRoot: boolean;
  readonly granted: number;
  readonly creditUsed: number;
  readonly requests: number;
  readonly balance: number;
  readonly ledger: number;
  readonly usageRows: number;
  readonly usageCost: number;
  readonly dailyRequests: number;
  readonly dailyCost: number;
}

export interface UsageRecord {
  readonly request_id: string;
  readonly account_id: number;
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly cost: number;
  readonly status: number;
  readonly outcome: string;
  readonly usage_source: string;
}

export interface Books {
  readonly integrity: string;
  readonly accounts: AccountBooks[];
  readonly usage: Map<string, UsageRecord>;
  /** Request ids with more than one ledger row. */
  readonly billedTwice: string[];
}

export function readBooks(dataDir: string): Books {
  const db = new Database(join(dataDir, 'proxyxai.db'), { readonly: true, fileMustExist: true });
  try {
    const now = Date.now();
    const integrity = String(db.pragma('integrity_check', { simple: true }));
    const rows = db
      .prepare('select id, name, is_root, credit_granted, credit_used, requests from accounts order by id')
      .all() as Array<{
      id: number;
      name: string;
      is_root: number;
      credit_granted: number;
      credit_used: number;
      requests: number;
    }>;
    const one = (q: string, ...args: unknown[]): number =>
      Number((db.prepare(q).get(...args) as { v: number | null }).v ?? 0);
    const accounts = rows.map((r) => ({
      id: r.id,
      name: r.name,
      isRoot: r.is_root === 1,
      granted: Number(r.credit_granted),
      creditUsed: Number(r.credit_used),
      requests: Number(r.requests),
      balance: one(
        'select sum(balance) as v from credit_cards where account_id = ? and expires_at > ?',
        r.id,
        now,
      ),
      ledger: one('select sum(amount) as v from ledger where account_id = ?', r.id),
      // One usage row per admitted request (requests refused at the gates are logged apart).
      usageRows: one(
        "select count(*) as v from usage_records where account_id = ? and usage_source <> 'gate'",
        r.id,
      ),
      usageCost: one('select sum(cost) as v from usage_records where account_id = ?', r.id),
      dailyRequests: one('select sum(requests) as v from usage_daily where account_id = ?', r.id),
      dailyCost: one('select sum(cost) as v from usage_daily where account_id = ?', r.id),
    }));
    const usage = new Map<string, UsageRecord>();
    const all = db
      .prepare(
        `select request_id, account_id, prompt_tokens, completion_tokens, cost, status, outcome, usage_source
         from usage_records`,
      )
      .all() as UsageRecord[];
    for (const u of all) usage.set(u.request_id, u);
    const billedTwice = (
      db
        .prepare(
          'select request_id from ledger where request_id is not null group by request_id having count(*) > 1',
        )
        .all() as Array<{ request_id: string }>
    ).map((r) => r.request_id);
    return { integrity, accounts, usage, billedTwice };
  } finally {
    db.close();
  }
}

/** Asserts every invariant of the books (`when` names the moment in failure messages). */
export function expectConsistent(books: Books, when: string): void {
  expect(books.integrity, `${when}: integrity_check`).toBe('ok');
  expect(books.billedTwice, `${when}: request ids with two ledger rows`).toEqual([]);
  for (const a of books.accounts) {
    const tag = `${when}: account ${a.name}`;
    expect(a.usageRows, `${tag}: usage rows = requests counted`).toBe(a.requests);
    expect({ requests: a.dailyRequests, cost: a.dailyCost }, `${tag}: per-day aggregates`).toEqual({
      requests: a.usageRows,
      cost: a.usageCost,
    });
    if (a.isRoot) continue; // unlimited: no cards, no ledger
    expect(a.balance, `${tag}: balance`).toBeGreaterThanOrEqual(0);
    expect(a.creditUsed + a.balance, `${tag}: credit_used + balance = granted`).toBe(a.granted);
    expect(a.ledger, `${tag}: Σ ledger = balance`).toBe(a.balance);
    expect(a.usageCost, `${tag}: Σ usage cost = credit_used`).toBe(a.creditUsed);
  }
}
