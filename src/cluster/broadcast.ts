/**
 * Change notices to every instance, over one Redis channel, with per-topic versions so that a
 * receiver knows when it cannot trust its cache any more.
 *
 * Guarantees, precisely:
 * - Order. Publishing is one script: INCR the topic's version, then PUBLISH. Versions of a topic
 *   therefore reach every subscriber in increasing order. Each instance applies notices one at a
 *   time, in that order (local ones included), and waits for async handlers.
 * - Loss is detected, never silent. A receiver calls `reconcile(topic, reason)` (re-read that
 *   topic from the system of record) when: a version was skipped (`gap`); Redis lost its data and
 *   counters restarted (`reset`, seen as a new epoch); its subscriber reconnected, so messages of
 *   the outage are gone (`resubscribed`, all topics); a handler threw (`handler-failed`). A
 *   reconcile that throws is retried every `retryMs` until it succeeds.
 * - "Applied" (for `publishAndWait`): an instance has run every handler of that notice (or a
 *   reconcile that came after it) without error, and recorded the topic's version in its hash
 *   `bc:applied:<instance>`. It records nothing while a topic awaits reconcile.
 * - The sender applies its own notice through the same handlers before publishing, so `publish`
 *   resolving means this instance is up to date; its subscriber skips the echo.
 * - Not guaranteed: delivery to an instance whose Redis link is down (it reconciles on return),
 *   nor to one that starts later (it loads its state after `start()`). If `publish` rejects
 *   (Redis unreachable), the notice was applied here only: the caller retries or reconciles.
 */
import { TOPICS, decodeEnvelope, encodeBody, type Delivery, type Handler } from './notices.js';
import type { Notice, NoticeOf, ReconcileReason, Topic } from './notices.js';
import {
  ACK_TTL_MS,
  awaitConfirmations,
  broadcastKeys,
  broadcastScripts,
  newEpoch,
  type WaitResult,
} from './broadcast-redis.js';
import { replyArray, replyInt, replyString } from './lua-script.js';
import { messageOf, silentLog, type ClusterLog, type ClusterRedis } from './redis.js';

export type { Handler, ReconcileReason, WaitResult };

/** Who must confirm an acknowledged broadcast (the heartbeat implements it). */
export interface LiveInstances {
  liveInstances(): Promise<readonly string[]>;
}

export interface BroadcastOptions {
  readonly instanceId: string;
  readonly instances: LiveInstances;
  /** Re-read everything of a topic; called instead of trusting the cache (see the header). */
  readonly reconcile: (topic: Topic, reason: ReconcileReason) => void | Promise<void>;
  readonly log?: ClusterLog;
  /** Pause before a failed reconcile is tried again (default 1000 ms). */
  readonly retryMs?: number;
}

interface TopicState {
  /** Highest version received (or read as the baseline) in the current epoch. */
  last: number;
  /** Set while the topic awaits a successful reconcile; nothing is acknowledged meanwhile. */
  dirty: ReconcileReason | undefined;
}

export class Broadcast {
  private readonly handlers = new Map<Topic, Set<Handler<Topic>>>();
  private readonly topics = new Map<Topic, TopicState>();
  private readonly log: ClusterLog;
  private readonly scripts;
  private readonly keys;
  private epoch: string | undefined;
  /** Every notice, local or remote, and every resync runs in this chain, one at a time. */
  private queue: Promise<void> = Promise.resolve();
  private resyncNeeded: ReconcileReason | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private offListeners: (() => void) | undefined;
  private stopped = false;

  constructor(
    private readonly redis: ClusterRedis,
    private readonly opts: BroadcastOptions,
  ) {
    this.log = opts.log ?? silentLog;
    this.keys = broadcastKeys(redis);
    this.scripts = broadcastScripts(redis);
    for (const topic of TOPICS) this.topics.set(topic, { last: 0, dirty: undefined });
  }

  /** Registers a handler for one topic; returns its removal. */
  on<T extends Topic>(topic: T, handler: Handler<T>): () => void {
    // Only notices of `topic` are dispatched to this set (see runHandlers), hence the cast.
    const wrapped: Handler<Topic> = (notice, delivery) => handler(notice as NoticeOf<T>, delivery);
    let set = this.handlers.get(topic);
    if (set === undefined) this.handlers.set(topic, (set = new Set()));
    set.add(wrapped);
    return () => set.delete(wrapped);
  }

  /**
   * Subscribes and reads the current versions (the baseline). Load the cache AFTER this resolves:
   * a change published before it is then in what you load, and every later one is delivered.
   */
  async start(): Promise<void> {
    await this.redis.subscribe(this.keys.channel, (message) => this.background(() => this.receive(message)));
    const offResubscribed = this.redis.onResubscribed(() => this.requestResync({ kind: 'resubscribed' }));
    // The command connection may come back after the subscriber: a resync that failed for want of
    // it runs again at once instead of after retryMs.
    const offReconnected = this.redis.onReconnected(() => {
      if (this.resyncNeeded !== undefined) this.requestResync(this.resyncNeeded);
    });
    this.offListeners = () => {
      offResubscribed();
      offReconnected();
    };
    await this.enqueue(() => this.resync(undefined));
  }

  /** Applies the notice here, then publishes it; resolves with its version. */
  async publish(notice: Notice): Promise<number> {
    await this.enqueue(async () => {
      const error = await this.runHandlers(notice, { kind: 'local' });
      if (error !== undefined) {
        this.state(notice.topic).dirty ??= { kind: 'handler-failed', error };
        await this.settle([]);
      }
    });
    const reply = await this.scripts.publish.run(
      [this.keys.version(notice.topic), this.keys.epoch],
      [this.keys.channel, encodeBody(this.opts.instanceId, notice), newEpoch()],
    );
    return replyInt(reply);
  }

  /**
   * Publishes, then waits (at most `timeoutMs`) until every instance live at publication has
   * applied it. Never rejects for a slow instance: the result names who did not confirm.
   */
  async publishAndWait(notice: Notice, options: { readonly timeoutMs: number }): Promise<WaitResult> {
    const self = this.opts.instanceId;
    const live = await this.opts.instances.liveInstances();
    const version = await this.publish(notice);
    return awaitConfirmations({
      self,
      awaited: live.filter((id) => id !== self),
      version,
      deadline: Date.now() + options.timeoutMs,
      appliedVersions: async (ids) =>
        replyArray(
          await this.scripts.applied.run(
            ids.map((id) => this.keys.applied(id)),
            [notice.topic],
          ),
        ).map(replyInt),
      liveInstances: () => this.opts.instances.liveInstances(),
      log: this.log,
    });
  }

  /** Unsubscribes and forgets this instance's confirmations. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.offListeners?.();
    await this.queue;
    await Promise.all([
      this.redis.unsubscribe(this.keys.channel).catch(() => {}),
      this.redis.commands.del(this.keys.applied(this.opts.instanceId)).catch(() => {}),
    ]);
  }

  private async receive(message: string): Promise<void> {
    if (this.stopped) return;
    const envelope = decodeEnvelope(message);
    if (envelope === undefined) {
      this.log.warn({ message: message.slice(0, 200) }, 'broadcast: unreadable notice ignored');
      return;
    }
    const { epoch, version, origin, notice } = envelope;
    if (this.epoch === undefined) {
      // Before the baseline is read (start-up): what this announces is in what the caller loads
      // after start(), so only the (idempotent) handlers run; no version is tracked yet.
      if (origin !== this.opts.instanceId)
        await this.runHandlers(notice, { kind: 'remote', origin, version });
      return;
    }
    let toAck: readonly Topic[] = [notice.topic];
    if (epoch !== this.epoch) {
      // Redis lost its data: every counter started again, and anything may have been missed.
      this.epoch = epoch;
      for (const state of this.topics.values()) {
        state.last = 0;
        state.dirty = { kind: 'reset' };
      }
      toAck = TOPICS;
    }
    const state = this.state(notice.topic);
    if (version > state.last + 1)
      state.dirty ??= { kind: 'gap', expected: state.last + 1, received: version };
    // version <= last: published before our baseline was read, so already in what we loaded;
    // handlers still run (they are idempotent re-reads) but nothing else changes.
    const fresh = version > state.last;
    if (fresh) state.last = version;
    if (origin !== this.opts.instanceId) {
      const error = await this.runHandlers(notice, { kind: 'remote', origin, version });
      if (error !== undefined) state.dirty ??= { kind: 'handler-failed', error };
    }
    await this.settle(fresh ? toAck : []);
  }

  /** Reads the epoch and versions again; with a reason, every topic is reconciled. */
  private async resync(reason: ReconcileReason | undefined): Promise<void> {
    const keys = [this.keys.epoch, ...TOPICS.map(this.keys.version)];
    const reply = replyArray(await this.scripts.baseline.run(keys, [newEpoch()]));
    const epoch = replyString(reply[0]);
    const reset = this.epoch !== undefined && epoch !== this.epoch;
    this.epoch = epoch;
    TOPICS.forEach((topic, i) => {
      const state = this.state(topic);
      state.last = replyInt(reply[i + 1]);
      if (reason !== undefined) state.dirty = reset ? { kind: 'reset' } : reason;
    });
    await this.settle(TOPICS);
  }

  private requestResync(reason: ReconcileReason): void {
    this.background(async () => {
      try {
        await this.resync(reason);
        this.resyncNeeded = undefined;
      } catch (err) {
        this.resyncNeeded = reason;
        this.log.warn({ error: messageOf(err) }, 'broadcast: cannot read versions; will retry');
        this.scheduleRetry();
      }
    });
  }

  /** Reconciles every dirty topic, then acknowledges the given topics that are clean. */
  private async settle(toAck: readonly Topic[]): Promise<void> {
    for (const [topic, state] of this.topics) {
      if (state.dirty === undefined) continue;
      const reason = state.dirty;
      try {
        await this.opts.reconcile(topic, reason);
        state.dirty = undefined;
      } catch (err) {
        this.log.error({ topic, reason: reason.kind, error: messageOf(err) }, 'broadcast: reconcile failed');
        this.scheduleRetry();
      }
    }
    const pairs = toAck.flatMap((topic) => {
      const state = this.state(topic);
      return state.dirty === undefined ? [topic, state.last] : [];
    });
    if (pairs.length === 0) return;
    try {
      await this.scripts.ack.run([this.keys.applied(this.opts.instanceId)], [ACK_TTL_MS, ...pairs]);
    } catch (err) {
      // Not fatal: the next notice or resync records a version at least as high.
      this.log.warn({ error: messageOf(err) }, 'broadcast: cannot record applied versions');
    }
  }

  private scheduleRetry(): void {
    if (this.stopped || this.retryTimer !== undefined) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.resyncNeeded !== undefined) this.requestResync(this.resyncNeeded);
      else this.background(() => this.settle(TOPICS));
    }, this.opts.retryMs ?? 1_000);
    this.retryTimer.unref();
  }

  /** Runs every handler of the notice's topic; returns the first error (all still run). */
  private async runHandlers(notice: Notice, delivery: Delivery): Promise<string | undefined> {
    let first: string | undefined;
    for (const handler of this.handlers.get(notice.topic) ?? []) {
      try {
        await handler(notice, delivery);
      } catch (err) {
        first ??= messageOf(err);
        this.log.error({ topic: notice.topic, error: messageOf(err) }, 'broadcast: handler failed');
      }
    }
    return first;
  }

  /** Runs the task after every earlier one; the returned promise carries its outcome. */
  private enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.queue.then(task);
    this.queue = run.catch((err: unknown) => {
      this.log.error({ error: messageOf(err) }, 'broadcast: task failed');
    });
    return run;
  }

  /** The same, for callers that do not wait (the chain has logged any failure). */
  private background(task: () => Promise<void>): void {
    this.enqueue(task).catch(() => {});
  }

  private state(topic: Topic): TopicState {
    const state = this.topics.get(topic);
    if (state === undefined) throw new Error(`unknown topic ${topic}`);
    return state;
  }
}
