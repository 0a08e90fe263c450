/**
 * Batched writes of account state. Memory is mutated synchronously by the domain; each mutation
 * marks the account dirty and appends its ledger / usage rows here. A flush snapshots, in one
 * synchronous step, every dirty account (fields and full card list) plus the queued rows, and
 * writes them in ONE transaction — so each balance change lands with its ledger row, and the
 * store always equals memory as of some instant. Flushes run every FLUSH_INTERVAL_MS, after
 * STATS_INTERVAL usage rows, on demand (admin calls wait for theirs) and at shutdown.
 *
 * With a settlement journal (src/journal/), each snapshot is a cut of the journal and each
 * successful write deletes the journal files the cut closed: the journal holds exactly the
 * settlements that may still be missing from the store.
 */
import type { Logger } from 'pino';
import type { Account } from '../accounts/account.js';
import { foldKey } from '../accounts/account-rules.js';
import type { JournalCuts } from '../journal/settlement-journal.js';
import { LedgerColumns, UsageColumns } from './row-columns.js';
import {
  GATE_REFUSAL,
  type AccountRow,
  type Batch,
  type BatchSink,
  type DailyRow,
  type LedgerRow,
  type ObjectRow,
  type UsageRow,
} from './batch-sink.js';

export type { AccountRow, LedgerRow, ObjectRow, UsageRow } from './batch-sink.js';

interface Snapshot extends Batch {
  /** The accounts themselves, to mark dirty again when the write fails. */
  sources: Account[];
  /** The journal's cut at this snapshot (with a journal). */
  cut: number | undefined;
}

export class StateWriter {
  private dirty = new Map<number, Account>();
  /** Ids of deleted accounts: a late settlement must not write a deleted account back. */
  private readonly gone = new Set<number>();
  private deleted: number[] = [];
  // Held column by column until the flush (row-columns.ts: no object per row meanwhile).
  private readonly ledger = new LedgerColumns();
  private readonly usage = new UsageColumns();
  /** Latest row of each object changed since the last flush (by id). */
  private objects = new Map<string, ObjectRow>();
  /** Rows of the flush in progress, so an object is known to be written or about to be. */
  private writingObjects: ReadonlyMap<string, ObjectRow> = new Map();
  /** Accounts of the snapshot being written (they must not be evicted and loaded again meanwhile). */
  private writing: ReadonlySet<number> = new Set();
  private written = 0;
  private running: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private retryAt = 0;
  private countFlushPending = false;

  constructor(
    private readonly sink: BatchSink,
    private readonly log: Logger,
    private readonly opts: {
      flushIntervalMs: number;
      statsInterval: number;
      /**
       * False on several instances: accounts are not written whole (the sub-account API writes its
       * own changes, settlements go as deltas), so nothing is kept for it.
       */
      accountSnapshots?: boolean;
      /**
       * Usage and ledger rows that may wait while the store is unreachable (default 100,000,
       * some tens of MB): past that, metered requests are refused (`backlogged`) so memory stays
       * bounded and nothing already billed is dropped.
       */
      maxBacklog?: number;
      /** The settlement journal, cut at each snapshot and trimmed once the snapshot is written. */
      journal?: JournalCuts | undefined;
      /** Called after each successful write, once its accounts are no longer held for it. */
      afterWrite?: (() => void) | undefined;
    },
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      // While the store fails, timed flushes back off (up to 2 s apart) instead of hammering it;
      // flushes asked for explicitly still try at once.
      if (this.failures > 0 && Date.now() < this.retryAt) return;
      void this.flush().catch(() => undefined);
    }, this.opts.flushIntervalMs);
    this.timer.unref();
  }

  stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    return this.flush();
  }

  markDirty(account: Account): void {
    if (this.opts.accountSnapshots === false) return;
    if (!this.gone.has(account.id)) this.dirty.set(account.id, account);
  }

  markDeleted(account: Account): void {
    this.gone.add(account.id);
    this.dirty.delete(account.id);
    this.deleted.push(account.id);
  }

  addLedger(row: LedgerRow): void {
    this.ledger.push(row);
  }

  addUsage(row: UsageRow): void {
    this.usage.push(row);
    // One count-triggered flush at a time: rows arriving while it is queued or running join the
    // next batch instead of each scheduling a flush of their own.
    if (this.usage.length >= this.opts.statsInterval && !this.countFlushPending) {
      this.countFlushPending = true;
      this.flush()
        .catch(() => undefined)
        .finally(() => (this.countFlushPending = false));
    }
  }

  /** Queues an object's current row; a later save of the same id before the flush replaces it. */
  saveObject(row: ObjectRow): void {
    this.objects.set(row.id, row);
  }

  /** True while an object's row is queued or being written (so it must not be dropped from caches). */
  holdsObject(id: string): boolean {
    return this.objects.has(id) || this.writingObjects.has(id);
  }

  /**
   * True while `id` has state waiting for the store or being written: the registry keeps such an
   * account loaded, since a copy read from the store now would miss that state.
   */
  holds(id: number): boolean {
    return this.dirty.has(id) || this.writing.has(id);
  }

  /** True for an account deleted by this process (its row may still be in the store for a moment). */
  isGone(id: number): boolean {
    return this.gone.has(id);
  }

  /**
   * Snapshots written so far. A reader of account rows compares it before and after its read: a
   * write that completed meanwhile may have made what it read stale (account-loader.ts).
   */
  get writes(): number {
    return this.written;
  }

  /** The store has been failing and the rows waiting for it reached `maxBacklog`. */
  backlogged(): boolean {
    return this.failures > 0 && this.ledger.length + this.usage.length >= (this.opts.maxBacklog ?? 100_000);
  }

  /** Consecutive failed flushes (0 once a flush succeeds): `/readyz` says why it is not ready. */
  get failedFlushes(): number {
    return this.failures;
  }

  /** Ledger and usage rows waiting for the store (what `maxBacklog` bounds): a metrics gauge. */
  get queuedRows(): number {
    return this.ledger.length + this.usage.length;
  }

  get pending(): number {
    return this.dirty.size + this.deleted.length + this.ledger.length + this.usage.length + this.objects.size;
  }

  /** Writes everything queued so far; resolves when it is durable. Flushes never overlap. */
  flush(): Promise<void> {
    const next = this.running.then(() => this.flushOnce());
    this.running = next.catch(() => undefined);
    return next;
  }

  private async flushOnce(): Promise<void> {
    if (this.pending === 0) return;
    const snap = this.snapshot();
    this.writingObjects = new Map(snap.objects.map((o) => [o.id, o]));
    this.writing = new Set(snap.sources.map((a) => a.id));
    try {
      await this.sink.write(snap);
      this.written++;
      this.failures = 0;
      if (snap.cut !== undefined) this.opts.journal?.covered(snap.cut);
    } catch (err: unknown) {
      // A newer row of the same object queued meanwhile wins over the one that failed.
      for (const o of snap.objects) if (!this.objects.has(o.id)) this.objects.set(o.id, o);
      // Put the rows back in front so nothing settled is lost.
      this.failures++;
      this.retryAt = Date.now() + Math.min(2_000, 100 * 2 ** Math.min(this.failures, 5));
      requeue(this.ledger, snap.ledger);
      requeue(this.usage, snap.usage);
      this.deleted = [...snap.deleted, ...this.deleted];
      // Memory is newer than any snapshot: re-marking the accounts writes their current state next time.
      for (const a of snap.sources) if (!this.deleted.includes(a.id)) this.dirty.set(a.id, a);
      this.log.error({ err, failures: this.failures }, 'state flush failed; will retry');
      throw err;
    } finally {
      this.writingObjects = new Map();
      this.writing = new Set();
    }
    this.opts.afterWrite?.();
  }

  private snapshot(): Snapshot {
    const accounts: Snapshot['accounts'] = [];
    const cards: Snapshot['cards'] = new Map();
    for (const a of this.dirty.values()) {
      accounts.push(accountRow(a));
      cards.set(
        a.id,
        a.cards.map((c) => ({
          amount: c.amount,
          balance: c.balance,
          granted_at: c.grantedAt,
          expires_at: c.expiresAt,
          reference: c.reference ?? null,
        })),
      );
    }
    const usage = this.usage.take();
    const snap: Snapshot = {
      sources: [...this.dirty.values()],
      cut: this.opts.journal?.cut(),
      accounts,
      cards,
      deleted: this.deleted,
      ledger: this.ledger.take(),
      usage,
      daily: aggregateDaily(usage),
      objects: [...this.objects.values()],
    };
    this.objects = new Map();
    this.dirty = new Map();
    this.deleted = [];
    return snap;
  }
}

/** Puts the rows of a failed write back in front of those queued since, in their order. */
function requeue<R>(queue: { push(row: R): void; take(): R[] }, failed: readonly R[]): void {
  const since = queue.take();
  for (const row of failed) queue.push(row);
  for (const row of since) queue.push(row);
}

function aggregateDaily(rows: readonly UsageRow[]): DailyRow[] {
  const map = new Map<string, DailyRow>();
  for (const r of rows) {
    // Requests stopped at the gates are in the request log only: the daily totals count the
    // requests that were admitted (as the accounts' own counters do).
    if (r.usage_source === GATE_REFUSAL) continue;
    const k = `${r.account_id}\u0000${r.day}\u0000${r.model}`;
    const d = map.get(k);
    if (d === undefined) {
      map.set(k, {
        account_id: r.account_id,
        day: r.day,
        model: r.model,
        requests: 1,
        cost: r.cost,
        prompt_tokens: r.prompt_tokens,
        completion_tokens: r.completion_tokens,
      });
    } else {
      d.requests++;
      d.cost += r.cost;
      d.prompt_tokens += r.prompt_tokens;
      d.completion_tokens += r.completion_tokens;
    }
  }
  return [...map.values()];
}

export function accountRow(a: Account): AccountRow {
  return {
    id: a.id,
    parent_id: a.parentId,
    name: a.name,
    email: a.email,
    // The keys the store finds an account by (schema.ts AccountsTable).
    name_key: foldKey(a.name),
    email_key: foldKey(a.email),
    alias: a.alias,
    billing_email: a.billingEmail,
    key_hash: a.keyHash,
    partial_key: a.partialKey,
    level: a.level,
    rates: a.rates,
    rate_limit: a.rateLimit,
    child_limit: a.childLimit,
    hard_limit: a.hardLimit,
    soft_limit: a.softLimit,
    status: a.status ? 1 : 0,
    is_root: a.isRoot ? 1 : 0,
    allow_ips: a.allowIps === null ? null : JSON.stringify(a.allowIps),
    allow_models: a.allowModels === null ? null : JSON.stringify([...a.allowModels]),
    allow_endpoints: a.allowEndpoints === null ? null : JSON.stringify([...a.allowEndpoints]),
    credit_granted: a.creditGranted,
    credit_used: a.creditUsed,
    requests: a.requests,
    soft_notice_month: a.softNoticeMonth,
    created_at: a.createdAt,
    updated_at: a.updatedAt,
  };
}
