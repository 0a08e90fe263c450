/**
 * Instance liveness: who is running, and exactly one survivor told of each instance that died,
 * so that it can reclaim what the dead one held (credit leases).
 *
 * Model: a sorted set `hb:live` of instance id -> last beat, in Redis's own clock (TIME inside
 * the scripts, so instances with skewed clocks agree). Each instance beats every `intervalMs`
 * (default 1000). An instance whose last beat is older than `deadAfterMs` (default 5000, i.e. five
 * missed beats) is dead; survivors sweep every interval, so a death is noticed within
 * deadAfterMs + intervalMs (6 s by default). The sweep that finds it moves it, atomically, to the
 * set `hb:dead`; then one survivor claims it (`SET hb:claim:<id> NX PX claimMs`, in the same
 * script), runs `onInstanceDead(id)` while renewing the claim, and removes it. If that survivor
 * dies or its handler throws, the claim lapses and a survivor runs it again: exactly one handler
 * at a time, at least once, so handlers must be idempotent (reclaiming leases is).
 *
 * A graceful `stop()` deregisters at once (no death is announced: the instance gave back what it
 * held itself). After a Redis restart, the next beat re-registers (`onSelf` says so).
 *
 * Fencing: an instance declared dead while it still ran (paused too long, or cut off from Redis)
 * learns it at its next beat (`declared-dead`): it must drop, without giving back, all it held,
 * since that is being reclaimed. It stays out of the live set while its death is pending and
 * re-joins (`rejoined`) only once a survivor has finished with it, so a reclaim never races with
 * what it acquires afterwards. With no other survivor it may handle its own death.
 */
import { randomBytes } from 'node:crypto';
import { BEAT, FINISH, LIVE, RENEW, SWEEP } from './heartbeat-lua.js';
import { replyArray, replyInt, replyString } from './lua-script.js';
import { messageOf, silentLog, type ClusterLog, type ClusterRedis } from './redis.js';

/** What an instance learns about itself. */
export type SelfEvent =
  /** Its registration was gone (Redis restarted or was flushed); it is registered again. */
  | { readonly kind: 're-registered' }
  /** Survivors declared it dead and reclaim what it held: hold nothing until `rejoined`. */
  | { readonly kind: 'declared-dead' }
  /** Its death was handled; it is registered (live) again. */
  | { readonly kind: 'rejoined' }
  /** No beat reached Redis for longer than deadAfterMs: survivors may be reclaiming its holds. */
  | { readonly kind: 'unreachable'; readonly sinceMs: number }
  /** A beat reached Redis again after `unreachable`. */
  | { readonly kind: 'reachable' };

export type HeartbeatState =
  | { readonly kind: 'idle' }
  | { readonly kind: 'beating'; readonly lastBeat: number }
  | { readonly kind: 'failing'; readonly since: number; readonly error: string }
  | { readonly kind: 'declared-dead'; readonly since: number }
  | { readonly kind: 'stopped' };

export interface HeartbeatOptions {
  /**
   * Random per process by default (`newInstanceId()`). Must never be reused by another process
   * (not a host name): a restarted process with an old id would inherit that id's death.
   */
  readonly instanceId?: string;
  readonly intervalMs?: number;
  readonly deadAfterMs?: number;
  /**
   * How long a claim on a death lasts unless renewed (default 10 s). It is renewed while the
   * handler runs; it lapses when the claimant dies, or after its handler failed (the retry delay).
   */
  readonly claimMs?: number;
  readonly onInstanceDead?: (instanceId: string) => void | Promise<void>;
  readonly onSelf?: (event: SelfEvent) => void;
  readonly log?: ClusterLog;
}

/** How long an instance declared dead can still learn it when it comes back (a day). */
const MARKER_TTL_MS = 86_400_000;

export function newInstanceId(): string {
  return randomBytes(6).toString('hex');
}

export class Heartbeat {
  readonly instanceId: string;
  private readonly intervalMs: number;
  private readonly deadAfterMs: number;
  private readonly claimMs: number;
  private readonly log: ClusterLog;
  private readonly scripts;
  private current: HeartbeatState = { kind: 'idle' };
  private timer: NodeJS.Timeout | undefined;
  private unreachableSaid = false;
  /** Set from the beat that learnt this instance was declared dead until it rejoins. */
  private fencedSince: number | undefined;
  /** When beats last started succeeding in a row; sweeping waits a full death bound after it. */
  private streakStart: number | undefined;
  private readonly handling = new Map<string, Promise<void>>();
  private offReconnected: (() => void) | undefined;
  private ticking: Promise<void> = Promise.resolve();

  constructor(
    private readonly redis: ClusterRedis,
    private readonly opts: HeartbeatOptions = {},
  ) {
    this.instanceId = opts.instanceId ?? newInstanceId();
    this.intervalMs = opts.intervalMs ?? 1_000;
    this.deadAfterMs = opts.deadAfterMs ?? 5_000;
    this.claimMs = opts.claimMs ?? 10_000;
    if (this.deadAfterMs < 2 * this.intervalMs)
      throw new Error('deadAfterMs must be at least 2 × intervalMs');
    this.log = opts.log ?? silentLog;
    this.scripts = {
      beat: redis.script(BEAT),
      sweep: redis.script(SWEEP),
      renew: redis.script(RENEW),
      finish: redis.script(FINISH),
      live: redis.script(LIVE),
    };
  }

  state(): HeartbeatState {
    return this.current;
  }

  /** Registers (the first beat must reach Redis) and starts beating and sweeping. */
  async start(): Promise<void> {
    if (this.current.kind !== 'idle') throw new Error('heartbeat already started');
    await this.scripts.beat.run(this.beatKeys(), [this.instanceId]);
    this.current = { kind: 'beating', lastBeat: Date.now() };
    this.streakStart = Date.now();
    // Re-register at once when Redis comes back, rather than up to one interval later.
    this.offReconnected = this.redis.onReconnected(() => this.schedule(0));
    this.schedule(this.intervalMs);
  }

  /** Ids whose last beat is within the death bound (this one included while it runs). */
  async liveInstances(): Promise<readonly string[]> {
    const reply = replyArray(await this.scripts.live.run([this.key('live')], [this.deadAfterMs]));
    return reply.map(replyString);
  }

  /** Deregisters at once. Idempotent. A death handler in progress is awaited. */
  async stop(): Promise<void> {
    if (this.current.kind === 'stopped') return;
    this.current = { kind: 'stopped' };
    clearTimeout(this.timer);
    this.offReconnected?.();
    await this.ticking;
    await Promise.all(this.handling.values());
    await this.redis.commands.zrem(this.key('live'), this.instanceId).catch((err: unknown) => {
      this.log.warn({ error: messageOf(err) }, 'heartbeat: could not deregister; it will expire');
    });
  }

  private schedule(delayMs: number): void {
    if (this.current.kind === 'stopped') return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.ticking = this.tick().finally(() => this.schedule(this.intervalMs));
    }, delayMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.current.kind === 'stopped') return;
    if (!(await this.beat())) return;
    const now = Date.now();
    // Right after an outage every instance looks stale until it beats again: wait a full death
    // bound of successful beats before judging others, so that none is declared dead wrongly.
    if (this.streakStart !== undefined && now - this.streakStart >= this.deadAfterMs) await this.sweep();
  }

  private async beat(): Promise<boolean> {
    let result: number;
    try {
      result = replyInt(await this.scripts.beat.run(this.beatKeys(), [this.instanceId]));
    } catch (err) {
      const since = this.current.kind === 'failing' ? this.current.since : Date.now();
      if (this.current.kind !== 'failing') this.log.warn({ error: messageOf(err) }, 'heartbeat: beat failed');
      if (this.current.kind !== 'stopped') this.current = { kind: 'failing', since, error: messageOf(err) };
      this.streakStart = undefined;
      if (!this.unreachableSaid && Date.now() - since > this.deadAfterMs) {
        this.unreachableSaid = true;
        this.emit({ kind: 'unreachable', sinceMs: since });
      }
      return false;
    }
    if (this.current.kind === 'stopped') return false;
    this.streakStart ??= Date.now();
    if (this.unreachableSaid) {
      this.unreachableSaid = false;
      this.emit({ kind: 'reachable' });
    }
    if (result === 3) {
      // Declared dead, death not handled yet: out of the live set until a survivor is done.
      if (this.fencedSince === undefined) this.fenced();
      this.current = { kind: 'declared-dead', since: this.fencedSince ?? Date.now() };
      return true;
    }
    const wasFenced = this.fencedSince !== undefined;
    if (result === 2 && !wasFenced) this.fenced(); // declared dead and handled while it was away
    if (result === 2 || wasFenced) {
      this.fencedSince = undefined;
      this.log.info({ instance: this.instanceId }, 'heartbeat: rejoined after its death was handled');
      this.emit({ kind: 'rejoined' });
    } else if (result === 1) {
      this.log.info({ instance: this.instanceId }, 'heartbeat: registered again (Redis lost its data)');
      this.emit({ kind: 're-registered' });
    }
    this.current = { kind: 'beating', lastBeat: Date.now() };
    return true;
  }

  private fenced(): void {
    this.fencedSince = Date.now();
    this.log.warn({ instance: this.instanceId }, 'heartbeat: this instance was declared dead');
    this.emit({ kind: 'declared-dead' });
  }

  private async sweep(): Promise<void> {
    let claimed: readonly string[];
    try {
      const reply = await this.scripts.sweep.run(
        [this.key('live'), this.key('dead')],
        [
          this.deadAfterMs,
          MARKER_TTL_MS,
          this.key('declared-dead', ''),
          this.key('claim', ''),
          this.instanceId,
          this.claimMs,
        ],
      );
      claimed = replyArray(reply).map(replyString);
    } catch (err) {
      this.log.warn({ error: messageOf(err) }, 'heartbeat: sweep failed');
      return;
    }
    for (const dead of claimed) if (!this.handling.has(dead)) this.handleDeath(dead);
  }

  /**
   * Runs the handler in the background (the beat must go on), renewing the claim while it runs
   * so that no other survivor starts on the same death; finishes the claim on success. On
   * failure the claim is left to expire: another attempt comes after claimMs (a natural backoff).
   */
  private handleDeath(dead: string): void {
    this.log.warn({ instance: dead, by: this.instanceId }, 'heartbeat: instance dead; reclaiming');
    const claimKey = this.key('claim', dead);
    const renewal = setInterval(() => {
      this.scripts.renew.run([claimKey], [this.instanceId, this.claimMs]).catch(() => {});
    }, this.claimMs / 3);
    renewal.unref();
    const run = (async () => {
      try {
        await this.opts.onInstanceDead?.(dead);
        await this.scripts.finish.run([claimKey, this.key('dead')], [dead, this.instanceId]);
      } catch (err) {
        this.log.error({ instance: dead, error: messageOf(err) }, 'heartbeat: death handler failed');
      } finally {
        clearInterval(renewal);
        this.handling.delete(dead);
      }
    })();
    this.handling.set(dead, run);
  }

  private emit(event: SelfEvent): void {
    try {
      this.opts.onSelf?.(event);
    } catch (err) {
      this.log.error({ error: messageOf(err) }, 'heartbeat: onSelf listener failed');
    }
  }

  private beatKeys(): string[] {
    return [this.key('live'), this.key('dead'), this.key('declared-dead', this.instanceId)];
  }

  private key(...parts: string[]): string {
    return this.redis.key('hb', ...parts);
  }
}
