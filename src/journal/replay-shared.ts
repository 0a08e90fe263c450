/**
 * Several instances: the settlement journals of instances that died are written to the store by
 * the instances that live. Each instance journals into its own folder, named after its id, under
 * the store's journal folder (a restarted container keeps its DATA_DIR, so its next instance finds
 * its predecessor's folder; replicas sharing one volume find each other's). A folder is replayed
 * once its instance is dead (no Redis heartbeat and no fresh `instances` row), at start-up and by
 * the lease janitor afterwards; files at the top of the folder were left by a run without Redis.
 *
 * The entries go through the delta sink as the dead instance's batch: usage rows inserted once per
 * request id (an entry already in the store, or replayed by another instance meanwhile, is skipped
 * whole), cards spent, and the dead instance's lease shrunk by what it spent when the lease is
 * still there (reclaimed already: nothing to shrink). So a replay never bills twice, even when two
 * instances replay the same folder at once, and writing it again changes nothing.
 */
import { readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Batch, BatchSink, LedgerRow } from '../store/batch-sink.js';
import type { SettlementEntry } from './settlement-entry.js';
import { journalFiles, SettlementJournal } from './settlement-journal.js';

export interface SharedReplayDeps {
  /** The store's journal folder (`journalFolder`). */
  readonly dir: string;
  /** This instance's id: its own folder is never replayed here. */
  readonly self: string;
  /** Which of these instance ids are dead (their journals may be replayed). */
  readonly dead: (ids: readonly string[]) => Promise<readonly string[]>;
  /** The delta sink that writes as instance `id` ('' for a run without Redis: no lease). */
  readonly sinkFor: (id: string) => BatchSink;
  /** Ids of root accounts (unlimited: no ledger row for their usage). */
  readonly roots: () => Promise<ReadonlySet<number>>;
  /**
   * What each account can still pay for the dead instance `instance`: its live cards less what
   * other instances hold leased. (Once the dead instance's lease is reclaimed, the credit it spent
   * is spendable again until this replay; an account that spent it elsewhere meanwhile is charged
   * what is left, never below zero, as one process absorbs an underestimated cost.)
   */
  readonly budgets: (instance: string, accounts: readonly number[]) => Promise<ReadonlyMap<number, number>>;
  readonly log: Logger;
}

/** Replays every dead instance's journal found; returns how many entries it wrote. */
export async function replaySharedJournals(deps: SharedReplayDeps): Promise<number> {
  const { dir, log } = deps;
  const folders = subfolders(dir).filter((id) => id !== deps.self);
  const dead = new Set(folders.length === 0 ? [] : await deps.dead(folders));
  const targets = [
    ...(journalFiles(dir).length > 0 ? [{ dir, instance: '' }] : []),
    ...folders.filter((id) => dead.has(id)).map((id) => ({ dir: join(dir, id), instance: id })),
  ];
  let written = 0;
  for (const t of targets) {
    const journal = SettlementJournal.open({ dir: t.dir, fsync: false, log });
    const entries = journal.recovered;
    if (entries.length > 0) {
      const accounts = [...new Set(entries.map((e) => e.account))];
      const batch = toBatch(entries, await deps.roots(), await deps.budgets(t.instance, accounts));
      await deps.sinkFor(t.instance).write(batch);
      written += entries.length;
      log.warn(
        {
          instance: t.instance === '' ? undefined : t.instance,
          entries: entries.length,
          skipped: journal.skipped,
        },
        'settlement journal of a dead instance written to the store (entries already there skipped)',
      );
    }
    journal.dropRecovered();
    if (t.dir !== dir) removeEmpty(t.dir, log);
  }
  return written;
}

/** One delta-sink batch of journal entries: their usage rows and the ledger rows they imply. */
function toBatch(
  entries: readonly SettlementEntry[],
  roots: ReadonlySet<number>,
  budgets: ReadonlyMap<number, number>,
): Batch {
  const left = new Map(budgets);
  const usage = entries
    .flatMap((e) => e.rows)
    .map((row) => {
      if (row.cost <= 0 || roots.has(row.account_id)) return row;
      const budget = left.get(row.account_id) ?? 0;
      const cost = Math.min(row.cost, budget);
      left.set(row.account_id, budget - cost);
      return cost === row.cost ? row : { ...row, cost };
    });
  const ledger: LedgerRow[] = [];
  for (const row of usage) {
    if (row.cost <= 0 || roots.has(row.account_id)) continue;
    ledger.push({
      account_id: row.account_id,
      kind: 'usage',
      amount: -row.cost,
      request_id: row.request_id,
      note: row.model,
      created_at: row.created_at,
    });
  }
  // The delta sink derives the daily totals from the usage rows it inserts.
  return { accounts: [], cards: new Map(), deleted: [], ledger, usage, daily: [], objects: [] };
}

function subfolders(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

function removeEmpty(dir: string, log: Logger): void {
  try {
    rmdirSync(dir);
  } catch (err: unknown) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTEMPTY')
      log.warn({ err, dir }, 'could not remove a replayed journal folder');
  }
}
