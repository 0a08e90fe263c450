/**
 * Start-up after a crash: the settlements the previous process journaled but never wrote to the
 * store are applied again, before the gateway listens. An entry is applied only when the store has
 * no usage record with its request id (the writer puts a settlement's usage rows and the account
 * state it produced in one transaction, so a stored row means the settlement is in the store
 * whole): a replay never bills twice, and replaying the same files again changes nothing.
 *
 * Work billed when done (a batch, a background response) is settled together with its "done"
 * mark; when such a settlement is replayed, the mark is set again here, so the follower does not
 * bill the work a second time.
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Account } from '../accounts/account.js';
import type { Micros } from '../billing/money.js';
import type { Database } from '../store/schema.js';
import type { Follow, ObjectRecord } from '../tenancy/object-registry.js';
import type { SettlementEntry } from './settlement-entry.js';

export interface ReplayDeps {
  readonly journal: {
    readonly recovered: readonly SettlementEntry[];
    readonly skipped: number;
    replayed(): void;
    dropRecovered(): void;
  };
  readonly db: Kysely<Database>;
  readonly account: (id: number) => Promise<Account | undefined>;
  readonly meter: { replay(account: Account, entry: SettlementEntry): Micros };
  readonly follows: {
    openFollows(): Promise<ObjectRecord[]>;
    setFollow(rec: ObjectRecord, follow: Follow | null): void;
  };
  readonly flush: () => Promise<void>;
  readonly log: Logger;
}

export interface ReplayReport {
  /** Complete entries found in the journal files. */
  readonly found: number;
  /** Torn or unreadable lines skipped. */
  readonly skipped: number;
  /** Entries whose settlement the store already had. */
  readonly stored: number;
  /** Entries applied now. */
  readonly applied: number;
  /** Entries of accounts that no longer exist (not applied). */
  readonly orphaned: number;
  /** Micro-dollars charged by the applied entries. */
  readonly charged: Micros;
}

const IDS_PER_QUERY = 500;

export async function replayJournal(deps: ReplayDeps): Promise<ReplayReport> {
  const { journal, log } = deps;
  const entries = journal.recovered;
  const stored = await storedRequestIds(
    deps.db,
    entries.map((e) => firstId(e)),
  );
  let found = 0;
  let already = 0;
  let orphaned = 0;
  let charged = 0;
  const applied = new Set<string>();
  for (const entry of entries) {
    found++;
    const id = firstId(entry);
    if (stored.has(id) || applied.has(id)) {
      already++;
      continue;
    }
    const account = await deps.account(entry.account);
    if (account === undefined) {
      orphaned++;
      log.warn({ account: entry.account, request: id }, 'journaled settlement of a deleted account: dropped');
      continue;
    }
    charged += deps.meter.replay(account, entry);
    applied.add(id);
  }
  const report = {
    found,
    skipped: journal.skipped,
    stored: already,
    applied: applied.size,
    orphaned,
    charged,
  };
  if (applied.size === 0) {
    // Everything the files hold is in the store already.
    journal.dropRecovered();
    if (found > 0 || journal.skipped > 0) log.info(report, 'settlement journal: nothing to replay');
    return report;
  }
  for (const rec of await deps.follows.openFollows()) {
    if (rec.follow?.state === 'open' && applied.has(rec.follow.requestId))
      deps.follows.setFollow(rec, { state: 'done' });
  }
  journal.replayed();
  await deps.flush().catch((err: unknown) =>
    // The replayed settlements wait in the writer like any other; the files stay until written.
    log.error({ err }, 'could not write the replayed settlements yet; the writer retries'),
  );
  log.warn(report, 'settlement journal: replayed the settlements a crash kept from the store');
  return report;
}

function firstId(entry: SettlementEntry): string {
  return entry.rows[0]?.request_id ?? '';
}

async function storedRequestIds(db: Kysely<Database>, ids: readonly string[]): Promise<Set<string>> {
  const out = new Set<string>();
  const unique = [...new Set(ids)];
  for (let i = 0; i < unique.length; i += IDS_PER_QUERY) {
    const rows = await db
      .selectFrom('usage_records')
      .select('request_id')
      .where('request_id', 'in', unique.slice(i, i + IDS_PER_QUERY))
      .execute();
    for (const r of rows) out.add(r.request_id);
  }
  return out;
}
