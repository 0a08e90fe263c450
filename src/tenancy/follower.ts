/**
 * Work billed when done: the gateway itself follows every open batch and background response
 * until upstream ends it, then bills it — a client that never polls does not escape. Each one's
 * worst case stays reserved on the owner's balance meanwhile (and again after a restart: the
 * open follows are read back from the store and their reservations held before traffic starts).
 *
 * A batch is billed from its output file (every successful line's usage, summed per model, at the
 * price table's `batch_percent`); a background response from its own `usage`. The charge and the
 * object's "done" mark go to the store in one write batch, so a restart neither bills twice nor
 * forgets.
 *
 * Several instances (`claims` given): each open follow has one owner, the instance that created it
 * (`objects.follow_owner`), and only the owner follows it. When an instance dies, one survivor
 * takes its open follows over (`claimFrom`, from the heartbeat's death handler); at start-up and
 * periodically an instance takes over those no live instance holds (`claimAbandoned`). A claim
 * moves the owner in one UPDATE from the owner it names, so two claimants never both get a row.
 * An instance that lost a follow (declared dead while it ran) sees the new owner at its next
 * round, or right before settling, and lets it go without a charge. If it still settled in the
 * instant between, the settlement is written once all the same: the usage record is keyed by the
 * object id and the shared store skips one already present.
 */
import type { Logger } from 'pino';
import type { AccountLoader } from '../accounts/account-loader.js';
import { addUsage, usageFromOpenAI, type Usage } from '../billing/cost.js';
import type { DonePart, Meter, RequestEnd, Ticket } from '../billing/meter.js';
import type { PriceTable } from '../billing/price-table.js';
import type { KeyPool } from '../keys/key-pool.js';
import { CancelGroup } from '../upstream/cancel.js';
import { readCapped, sendWithRetry, type RetryPolicy } from '../upstream/send-with-retry.js';
import type { UpstreamClient } from '../upstream/upstream-client.js';
import type { ObjectRow } from '../store/state-writer.js';
import { forEachLine } from './body-lines.js';
import { jsonObject } from './json-object.js';
import type { ObjectRecord, ObjectRegistry } from './object-registry.js';
import { adoptDerived } from './record-objects.js';

export interface FollowerDeps {
  readonly registry: ObjectRegistry;
  readonly accounts: Pick<AccountLoader, 'byId'>;
  readonly meter: Meter;
  readonly prices: PriceTable;
  readonly pool: KeyPool;
  readonly upstream: UpstreamClient;
  readonly retry: RetryPolicy;
  readonly log: Logger;
  readonly intervalMs: number;
  readonly clock: () => number;
  /** Several instances: who follows what (cluster/follow-claims.ts). Absent on one instance. */
  readonly claims?: FollowClaims | undefined;
}

/**
 * The owners of open follows in the store, for several instances (`objects.follow_owner`). An
 * owner is an instance id; null is nobody (rows written by a single instance).
 */
export interface FollowClaims {
  /** This instance: the owner written on the work it starts following. */
  readonly self: string;
  /**
   * Moves every open follow of `from` (null: of nobody) to this instance in one statement, and
   * returns the rows it moved: none when another instance claimed them first.
   */
  claim(from: string | null): Promise<ObjectRow[]>;
  /**
   * Owners of open follows that no live instance holds (dead, or gone while nobody noticed), null
   * for unowned ones; never this instance. Rejects when liveness cannot be read.
   */
  abandoned(): Promise<Array<string | null>>;
  /** The owner the store names for each of `ids` that has a row. */
  owners(ids: readonly string[]): Promise<ReadonlyMap<string, string | null>>;
}

type Terminal = Extract<RequestEnd, { kind: 'done' }>['outcome'];

const BATCH_END: Readonly<Record<string, Terminal>> = {
  completed: 'completed',
  failed: 'failed',
  expired: 'expired',
  cancelled: 'cancelled',
};
const RESPONSE_END: Readonly<Record<string, Terminal>> = {
  completed: 'completed',
  failed: 'failed',
  cancelled: 'cancelled',
  incomplete: 'incomplete',
};

const MAX_OBJECT_BYTES = 4 * 1024 * 1024;
const MAX_OUTPUT_LINE = 64 * 1024 * 1024;
const CONCURRENCY = 4;

export const FOLLOWED_PATHS = { batch: '/v1/batches', response: '/v1/responses' } as const;

export class Follower {
  private readonly open = new Map<string, { readonly rec: ObjectRecord; readonly ticket: Ticket }>();
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private readonly cancels = new CancelGroup();

  constructor(private readonly deps: FollowerDeps) {}

  /** Number of objects followed right now. */
  get size(): number {
    return this.open.size;
  }

  /**
   * Reads the open follows back from the store and holds their reservations again. Several
   * instances: only those no live instance holds, which this one claims (`claimAbandoned`).
   */
  async resume(): Promise<void> {
    if (this.deps.claims !== undefined) {
      await this.claimAbandoned();
      return;
    }
    for (const rec of await this.deps.registry.openFollows()) await this.follow(rec);
  }

  /**
   * Several instances: takes over the open follows of `owner` (an instance that died: the
   * heartbeat's death handler calls this on one survivor) and holds their reservations. Returns
   * how many it took; none when another instance took them first. Idempotent.
   */
  async claimFrom(owner: string | null): Promise<number> {
    const claims = this.deps.claims;
    if (claims === undefined || owner === claims.self) return 0;
    const recs = this.deps.registry.adoptClaimed(await claims.claim(owner));
    for (const rec of recs) await this.follow(rec);
    // The dead instance's leases went back to the accounts: lease what the reservations hold.
    for (const rec of recs) await this.cover(rec);
    if (recs.length > 0) {
      this.deps.log.warn(
        { from: owner, objects: recs.map((r) => r.id) },
        'took over the open batches and background responses of another instance',
      );
    }
    return recs.length;
  }

  /**
   * Several instances: takes over the open follows no live instance holds (at start-up, and
   * periodically for those left by an instance that stopped or vanished unnoticed). Returns how
   * many it took.
   */
  async claimAbandoned(): Promise<number> {
    const claims = this.deps.claims;
    if (claims === undefined) return 0;
    let taken = 0;
    for (const owner of await claims.abandoned()) taken += await this.claimFrom(owner);
    return taken;
  }

  /** Starts following `rec`, whose worst case `ticket` holds; the caller flushes the writer. */
  track(rec: ObjectRecord, ticket: Ticket): void {
    const owner = this.deps.claims?.self;
    this.deps.registry.setFollow(rec, {
      state: 'open',
      reserved: ticket.reserved,
      requestId: ticket.requestId,
      model: rec.kind === 'batch' ? null : ticket.model,
      pricePercent: ticket.pricePercent,
      ...(owner !== undefined && { owner }),
    });
    this.open.set(rec.id, { rec, ticket });
  }

  /** Follows an open follow read from the store, its reservation held again. */
  private async follow(rec: ObjectRecord): Promise<void> {
    const f = rec.follow;
    if (f?.state !== 'open' || this.open.has(rec.id)) return;
    const account = await this.deps.accounts.byId(rec.accountId);
    if (this.open.has(rec.id)) return;
    if (account === undefined) {
      this.deps.log.warn({ object: rec.id }, 'followed object of a deleted account: no longer billed');
      this.deps.registry.setFollow(rec, { state: 'done' });
      return;
    }
    const ticket = this.deps.meter.hold(account, {
      requestId: f.requestId,
      path: rec.kind === 'batch' ? FOLLOWED_PATHS.batch : FOLLOWED_PATHS.response,
      model: f.model ?? rec.kind,
      price: f.model === null ? undefined : this.deps.prices.lookup(f.model),
      reserve: f.reserved,
      pricePercent: f.pricePercent,
    });
    this.open.set(rec.id, { rec, ticket });
  }

  private async cover(rec: ObjectRecord): Promise<void> {
    const ticket = this.open.get(rec.id)?.ticket;
    if (ticket !== undefined && !ticket.settled) await this.deps.meter.cover(ticket.account);
  }

  /**
   * Several instances: another instance claimed `id` (this one was declared dead while it ran).
   * Its reservation is let go here without a charge and without a usage record: a record under
   * the object's id would keep the new owner's settlement from being written.
   */
  private drop(id: string, owner: string): void {
    const item = this.open.get(id);
    if (item === undefined) return;
    this.open.delete(id);
    this.deps.meter.letGo(item.ticket);
    const f = item.rec.follow;
    if (f?.state === 'open') item.rec.follow = { ...f, owner };
    this.deps.log.warn({ object: id, owner }, 'another instance follows this object now: let it go');
  }

  /** Several instances: lets go of every follow the store gives to another instance. */
  private async dropClaimed(claims: FollowClaims): Promise<void> {
    if (this.open.size === 0) return;
    try {
      for (const [id, owner] of await claims.owners([...this.open.keys()])) {
        if (owner !== null && owner !== claims.self) this.drop(id, owner);
      }
    } catch (err: unknown) {
      // Checked again right before each settlement.
      this.deps.log.error({ err }, 'could not read who follows the open objects');
    }
  }

  start(): void {
    this.timer = setInterval(() => void this.pollOnce(), this.deps.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.cancels.abort();
    await this.polling;
  }

  /** One round over every open follow (the timer's tick; tests call it directly). */
  pollOnce(): Promise<void> {
    this.polling ??= this.round().finally(() => (this.polling = undefined));
    return this.polling;
  }

  private async round(): Promise<void> {
    if (this.deps.claims !== undefined) await this.dropClaimed(this.deps.claims);
    const queue = [...this.open.values()];
    const worker = async (): Promise<void> => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) {
        if (this.cancels.aborted) return;
        try {
          await this.check(item.rec, item.ticket);
        } catch (err: unknown) {
          this.deps.log.error({ err, object: item.rec.id }, 'could not follow an object; will retry');
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  }

  private async check(rec: ObjectRecord, ticket: Ticket): Promise<void> {
    const obj = await this.fetchJson(
      rec,
      `${FOLLOWED_PATHS[rec.kind === 'batch' ? 'batch' : 'response']}/${rec.id}`,
    );
    if (obj === undefined) return;
    const status = typeof obj['status'] === 'string' ? obj['status'] : '';
    const outcome = (rec.kind === 'batch' ? BATCH_END : RESPONSE_END)[status];
    if (outcome === undefined) return;
    // The owner may download the results even if it never reads the batch through the gateway.
    if (rec.kind === 'batch') await adoptDerived(this.deps.registry, rec, obj, this.deps.clock());
    const parts = rec.kind === 'batch' ? await this.batchParts(rec, obj) : this.responseParts(obj, ticket);
    if (parts === undefined) return; // the output could not be read completely: next round
    const claims = this.deps.claims;
    if (claims !== undefined && this.open.has(rec.id)) {
      // Still ours? (A survivor may have claimed it if this instance was declared dead.)
      const owner = (await claims.owners([rec.id])).get(rec.id);
      if (owner !== undefined && owner !== null && owner !== claims.self) {
        this.drop(rec.id, owner);
        return;
      }
    }
    // Several instances: the reservation is backed here before it is charged (a claim's lease
    // request may have failed while the store was away).
    if (claims !== undefined) await this.cover(rec);
    if (!this.open.has(rec.id)) return;
    this.open.delete(rec.id);
    // Charge and "done" mark in the same synchronous step: one write batch.
    this.deps.meter.settle(ticket, { kind: 'done', status: 200, outcome, parts, attempts: 1 });
    this.deps.registry.setFollow(rec, { state: 'done' });
    this.deps.log.info(
      { object: rec.id, outcome, account: rec.accountId },
      'followed work ended and was billed',
    );
  }

  private responseParts(obj: Record<string, unknown>, ticket: Ticket): DonePart[] {
    const usage = usageFromOpenAI(obj['usage']);
    if (usage === undefined) return [];
    const model = typeof obj['model'] === 'string' ? obj['model'] : ticket.model;
    const price = this.deps.prices.lookup(model) ?? ticket.price;
    return price === undefined ? [] : [{ model: ticket.model, price, usage }];
  }

  /** Usage of every successful line of the output file, summed per model. */
  private async batchParts(
    rec: ObjectRecord,
    batch: Record<string, unknown>,
  ): Promise<DonePart[] | undefined> {
    const outputId = batch['output_file_id'];
    if (typeof outputId !== 'string' || outputId === '') return [];
    const sent = await this.get(rec, `/v1/files/${encodeURIComponent(outputId)}/content`);
    if (sent?.kind !== 'stream') return undefined;
    const perModel = new Map<string, Usage>();
    const read = await forEachLine(sent.response.body, MAX_OUTPUT_LINE, (line) => {
      const parsed = jsonObject(line);
      const response = parsed?.['response'] as Record<string, unknown> | undefined;
      if (response?.['status_code'] !== 200) return;
      const body = response['body'] as Record<string, unknown> | undefined;
      const usage = usageFromOpenAI(body?.['usage']);
      const model = body?.['model'];
      if (usage === undefined || typeof model !== 'string') return;
      const total = perModel.get(model);
      if (total === undefined) perModel.set(model, usage);
      else addUsage(total, usage);
    });
    if (!read.ok) return undefined;
    const parts: DonePart[] = [];
    for (const [model, usage] of perModel) {
      const price = this.deps.prices.lookup(model);
      if (price === undefined) {
        // The plan refused unpriced models; a snapshot name upstream answered with may still miss.
        this.deps.log.warn(
          { object: rec.id, model },
          'batch output names a model without a price; not billed',
        );
        continue;
      }
      parts.push({ model, price, usage });
    }
    return parts;
  }

  private async fetchJson(rec: ObjectRecord, path: string): Promise<Record<string, unknown> | undefined> {
    const sent = await this.get(rec, path);
    if (sent?.kind !== 'stream') return undefined;
    return jsonObject(await readCapped(sent.response.body, MAX_OBJECT_BYTES));
  }

  private async get(rec: ObjectRecord, path: string): ReturnType<typeof sendWithRetry> {
    const cancel = this.cancels.create();
    try {
      return await sendWithRetry(
        this.deps.pool,
        this.deps.upstream,
        this.deps.retry,
        {
          method: 'GET',
          path,
          clientHeaders: {},
          body: undefined,
          cancel,
          affinity: { pins: [{ keyId: rec.keyId, group: rec.keyGroup }] },
        },
        () => undefined,
      );
    } finally {
      this.cancels.release(cancel);
    }
  }
}
