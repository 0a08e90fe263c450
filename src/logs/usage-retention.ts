/**
 * USAGE_RETENTION_DAYS: per-request rows of the request log (usage_records) older than that are
 * deleted, a small batch at a time with a pause between batches, on a timer: the delete never
 * holds the store (or, embedded, the event loop) for long, and the hot path's batched writes get
 * their turn in between. The per-day totals (usage_daily) that the dashboards read are kept for
 * ever, and so are the ledger's rows (the money's own history).
 *
 * Started only after the settlement journal was replayed: a replay looks for its request ids in
 * usage_records, so their rows must still be there while it runs.
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../store/schema.js';

const DAY_MS = 86_400_000;
/** Rows per delete statement (a few milliseconds of work on either store). */
const BATCH_ROWS = 2_000;
/** Pause between two batches of one run. */
const BATCH_PAUSE_MS = 50;
/** How often a run starts (the first one a minute after start-up). */
const RUN_EVERY_MS = 3_600_000;
const FIRST_RUN_MS = 60_000;

export class UsageRetention {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;
  private stopped = false;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly log: Logger,
    private readonly days: number,
    private readonly clock: () => number = Date.now,
  ) {}

  start(): void {
    if (this.days <= 0) return;
    const schedule = (ms: number): void => {
      this.timer = setTimeout(() => {
        void this.run()
          .catch((err: unknown) => this.log.warn({ err }, 'request log retention failed; retried later'))
          .finally(() => {
            if (!this.stopped) schedule(RUN_EVERY_MS);
          });
      }, ms);
      this.timer.unref();
    };
    schedule(FIRST_RUN_MS);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
  }

  /** Deletes every row older than the retention, batch by batch; returns how many went. */
  run(): Promise<number> {
    this.running ??= this.deleteOld().finally(() => (this.running = undefined));
    return this.running;
  }

  private async deleteOld(): Promise<number> {
    if (this.days <= 0) return 0;
    const before = this.clock() - this.days * DAY_MS;
    let total = 0;
    for (;;) {
      const result = await this.db
        .deleteFrom('usage_records')
        .where('request_id', 'in', (eb) =>
          eb
            .selectFrom('usage_records')
            .select('request_id')
            .where('created_at', '<', before)
            .orderBy('created_at')
            .limit(BATCH_ROWS),
        )
        .executeTakeFirst();
      const n = Number(result.numDeletedRows);
      total += n;
      if (n < BATCH_ROWS || this.stopped) break;
      await new Promise((r) => setTimeout(r, BATCH_PAUSE_MS));
    }
    if (total > 0) this.log.info({ deleted: total, days: this.days }, 'request log: old rows deleted');
    return total;
  }
}
