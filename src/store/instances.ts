/**
 * Which gateway processes use a shared store, and who may start beside whom.
 *
 * Each instance has a row in `instances` (id, host, pid, mode, started_at, heartbeat_at) and
 * refreshes its heartbeat every HEARTBEAT_INTERVAL_MS while it runs; a graceful stop deletes the
 * row. A row silent for longer than STALE_AFTER_MS belongs to a dead instance (a crash, kill -9)
 * and is forgotten at the next registration. Times are the store server's clock, so hosts with
 * skewed clocks still agree. The store implements the table (`InstanceLiveness`); the policies
 * live here: an instance without Redis keeps balances in its memory and must be alone
 * (`claimSoleInstance`); instances with Redis share money through leases and admit each other,
 * never one running alone (`joinInstances`).
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { StoreStartupError } from './store.js';

/** How often a running instance proves it is alive. */
export const HEARTBEAT_INTERVAL_MS = 5_000;
/**
 * A heartbeat older than this is a dead instance's: four missed beats, so a busy event loop or a
 * slow store does not make a live instance look dead; and a crashed instance blocks a restart on
 * the same database for at most this long.
 */
export const STALE_AFTER_MS = 20_000;

/** Alone on the store (balances in its memory), or one of several sharing it through Redis. */
export type InstanceMode = 'sole' | 'shared';

export interface InstanceIdentity {
  readonly id: string;
  readonly host: string;
  readonly pid: number;
  readonly mode: InstanceMode;
}

export interface LiveInstance extends InstanceIdentity {
  /** Epoch ms, store clock. */
  readonly startedAt: number;
  readonly heartbeatAt: number;
  /** Time since its last heartbeat, by the store's clock. */
  readonly silentMs: number;
}

/** The `instances` table of a shared store. */
export interface InstanceLiveness {
  /**
   * In one step no other instance can interleave with: forgets rows silent for longer than
   * `staleAfterMs`, reads the live ones (other than `self`), and registers `self` (heartbeat now)
   * if `admit` accepts them. Returns whether `self` was registered and the live others.
   */
  register(
    self: InstanceIdentity,
    staleAfterMs: number,
    admit: (others: readonly LiveInstance[]) => boolean,
  ): Promise<{ registered: boolean; others: LiveInstance[] }>;
  /** Refreshes the heartbeat of `id`; false when its row is gone (another instance judged it dead). */
  beat(id: string): Promise<boolean>;
  /** Deletes the row of `id` (graceful stop). */
  remove(id: string): Promise<void>;
}

export interface HeartbeatOptions {
  readonly intervalMs?: number;
  readonly staleAfterMs?: number;
}

/** This process's identity: a fresh id per start, so a restart is a new instance. */
export function newIdentity(mode: InstanceMode): InstanceIdentity {
  return { id: randomUUID(), host: hostname(), pid: process.pid, mode };
}

/** Keeps one registered instance's heartbeat fresh until `stop()`, which deletes its row. */
export class InstanceHeartbeat {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private failing = false;

  constructor(
    private readonly liveness: InstanceLiveness,
    readonly self: InstanceIdentity,
    private readonly admit: (others: readonly LiveInstance[]) => boolean,
    private readonly log: Logger,
    private readonly opts: Required<HeartbeatOptions>,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.running = this.running.then(() => this.beat());
    }, this.opts.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
    await this.liveness.remove(this.self.id);
  }

  private async beat(): Promise<void> {
    try {
      if (!(await this.liveness.beat(this.self.id))) {
        // Silent for longer than the bound (a long pause, a lost connection): another instance may
        // have started meanwhile. Register again if the policy still admits this one.
        const { registered, others } = await this.liveness.register(
          this.self,
          this.opts.staleAfterMs,
          this.admit,
        );
        if (registered) this.log.warn('instance heartbeat row had expired; registered again');
        else this.log.error({ others: others.map(describe) }, refusalText(others, 'now also running'));
      }
      if (this.failing) this.log.info('instance heartbeat written again');
      this.failing = false;
    } catch (err: unknown) {
      if (!this.failing) this.log.warn({ err }, 'could not write the instance heartbeat; retrying');
      this.failing = true;
    }
  }
}

/**
 * Registers this process as the only instance on the store, or throws a StoreStartupError that
 * names the other one. Returns the running heartbeat; `stop()` it on shutdown.
 */
export async function claimSoleInstance(
  liveness: InstanceLiveness,
  location: string,
  log: Logger,
  opts: HeartbeatOptions = {},
): Promise<InstanceHeartbeat> {
  const full = {
    intervalMs: opts.intervalMs ?? HEARTBEAT_INTERVAL_MS,
    staleAfterMs: opts.staleAfterMs ?? STALE_AFTER_MS,
  };
  const self = newIdentity('sole');
  const sole = (others: readonly LiveInstance[]): boolean => others.length === 0;
  const { registered, others } = await liveness.register(self, full.staleAfterMs, sole);
  if (!registered) {
    throw new StoreStartupError(
      `${refusalText(others, 'running')} on ${location}. ` +
        'Without REDIS_ADDR an instance must be alone on its database (its balances live in its ' +
        'memory): to run several, give every instance the same REDIS_ADDR; otherwise stop the ' +
        `other one first. If it crashed, start again once its last heartbeat is more than ` +
        `${full.staleAfterMs / 1000} s old.`,
    );
  }
  const heartbeat = new InstanceHeartbeat(liveness, self, sole, log, full);
  heartbeat.start();
  return heartbeat;
}

function describe(i: LiveInstance): string {
  return `${i.id.slice(0, 8)} on host "${i.host}", pid ${i.pid}, last heartbeat ${Math.round(i.silentMs / 1000)} s ago`;
}

function refusalText(others: readonly LiveInstance[], verb: string): string {
  return `another proxyxai instance is ${verb} (${others.map(describe).join('; ')})`;
}

/**
 * Registers this process as one of several instances sharing the store (several instances need
 * Redis as well: leases, broadcasts and the liveness that reclaims a dead instance's credit live
 * there). The row tells operators and the lease janitor who is running.
 */
export async function joinInstances(
  liveness: InstanceLiveness,
  location: string,
  log: Logger,
  opts: HeartbeatOptions = {},
): Promise<InstanceHeartbeat> {
  const full = {
    intervalMs: opts.intervalMs ?? HEARTBEAT_INTERVAL_MS,
    staleAfterMs: opts.staleAfterMs ?? STALE_AFTER_MS,
  };
  const self = newIdentity('shared');
  // Never beside an instance running alone: its balances live in its memory, unleased.
  const sharing = (others: readonly LiveInstance[]): boolean => others.every((o) => o.mode === 'shared');
  const { registered, others } = await liveness.register(self, full.staleAfterMs, sharing);
  if (!registered) {
    const alone = others.filter((o) => o.mode === 'sole');
    throw new StoreStartupError(
      `${refusalText(alone, 'running alone (without REDIS_ADDR)')} on ${location}. ` +
        'Instances sharing a database all need REDIS_ADDR: stop it and start it again with ' +
        `REDIS_ADDR set; if it crashed, start again once its last heartbeat is more than ` +
        `${full.staleAfterMs / 1000} s old.`,
    );
  }
  const heartbeat = new InstanceHeartbeat(liveness, self, sharing, log, full);
  heartbeat.start();
  return heartbeat;
}
