/**
 * Several instances over one PostgreSQL and one Redis: what this instance shares, assembled for
 * the composition root (which calls `startSharing` when the store is a server and REDIS_ADDR is
 * set, and hands the pieces to the meter, the writer and the routes).
 *
 * - money: a `LeasePurse` (credit leases in PostgreSQL) and the delta-only batch sink;
 * - limits: the cluster-wide RPM limiter (one Redis script per request);
 * - change notices: handlers per topic, attached once the registries exist (`attach`);
 * - liveness: this instance's row in `instances` and its Redis heartbeat; a dead instance's
 *   leases are reclaimed by one survivor (fast path, ≈ 6 s) or, after a restart of the whole
 *   cluster, by the janitor (leases of instances with no fresh row, ≤ 30 s);
 * - fencing: when this instance's heartbeats stop reaching Redis for `fenceAfterMs`, or it is told
 *   it was declared dead, it spends nothing more from its leases until it is back, and its
 *   earlier settlements are written before it leases again.
 */
import type { Logger } from 'pino';
import type { Account } from '../accounts/account.js';
import type { Calendar } from '../billing/calendar.js';
import type { BatchSink } from '../store/batch-sink.js';
import { joinInstances, STALE_AFTER_MS, type InstanceHeartbeat } from '../store/instances.js';
import type { SharedMoney, Store } from '../store/store.js';
import { startCluster, type Cluster } from './cluster.js';
import type { SelfEvent } from './heartbeat.js';
import { LeasePurse } from './lease-purse.js';
import type { Notice, ReconcileReason, Topic } from './notices.js';
import type { RedisSettings } from './redis.js';

/** What the rest of the gateway plugs in once it exists (accounts and keys are loaded later). */
export interface SharingHooks {
  /** An account changed elsewhere: reload it (absent from the store: forget it). */
  readonly reloadAccount: (id: number) => Promise<void>;
  readonly reloadAccounts: () => Promise<void>;
  readonly reloadKey: (id: number) => Promise<void>;
  readonly reloadKeys: () => Promise<void>;
  readonly account: (id: number) => Account | undefined;
  /** Writes every settlement queued so far (before leasing again after a fence). */
  readonly flush: () => Promise<void>;
  /** Takes over the open follows (batches, background responses) of an instance that died. */
  readonly claimFollowsOf?: (instanceId: string) => Promise<number>;
  /** Takes over the open follows no live instance holds (a restart of the whole cluster). */
  readonly claimAbandonedFollows?: () => Promise<number>;
  /** Writes the settlement journals of dead instances found on this instance's disk. */
  readonly replayJournals?: () => Promise<number>;
}

export interface Sharing {
  readonly instanceId: string;
  readonly cluster: Cluster;
  readonly purse: LeasePurse;
  readonly sink: BatchSink;
  readonly money: SharedMoney;
  attach(hooks: SharingHooks): void;
  /** Sends a change notice and waits (bounded) until every live instance applied it. */
  announce(notice: Notice): Promise<void>;
  /** Stops timers, gives every lease back (after the caller's last flush), leaves the cluster. */
  stop(): Promise<void>;
}

const JANITOR_MS = 5_000;
/** Keys re-read from the store this often, accounts five times less often. */
const BACKSTOP_MS = 60_000;
const IDLE_SWEEP_MS = 5_000;
/** How long an acknowledged notice may wait for the other instances. */
const ANNOUNCE_TIMEOUT_MS = 3_000;

export async function startSharing(opts: {
  readonly store: Store & {
    readonly shared: SharedMoney;
    readonly instances: NonNullable<Store['instances']>;
  };
  readonly redis: RedisSettings;
  readonly calendar: Calendar;
  readonly log: Logger;
  readonly clock: () => number;
  /** Heartbeat failures (Redis unreachable) after which this instance stops spending leases. */
  readonly fenceAfterMs?: number;
}): Promise<Sharing> {
  const { store, log, clock } = opts;
  const money = store.shared;
  const row: InstanceHeartbeat = await joinInstances(store.instances, store.location, log);
  const instanceId = row.self.id;
  let hooks: SharingHooks | undefined;
  const fenceAfterMs = opts.fenceAfterMs ?? 2_500;
  let declaredDead = false;

  const reconcile = async (topic: Topic, reason: ReconcileReason): Promise<void> => {
    if (hooks === undefined) return;
    log.info({ topic, reason: reason.kind }, 'reconciling with the store');
    if (topic === 'account') await hooks.reloadAccounts();
    else if (topic === 'key') await hooks.reloadKeys();
  };
  // The purse asks the cluster (not started yet) to recall credit; the cluster tells the purse to
  // fence: each refers to the other through this late binding.
  const late: { cluster?: Cluster } = {};
  const purse = new LeasePurse({
    instanceId,
    leases: money.leases,
    calendar: opts.calendar,
    log,
    clock,
    recall: async (accountId) => {
      await late.cluster?.broadcast.publishAndWait({ topic: 'lease-recall', accountId }, { timeoutMs: 500 });
    },
  });
  const onSelf = (event: SelfEvent): void => {
    if (event.kind === 'declared-dead') {
      declaredDead = true;
      purse.fence();
      log.error('the other instances declared this one dead: spending no leased credit until it rejoins');
    } else if (event.kind === 'rejoined') {
      declaredDead = false;
      void unfenceAfterFlush();
    }
  };
  const cluster = await startCluster({
    redis: opts.redis,
    log,
    instanceId,
    reconcile,
    onSelf,
    onInstanceDead: async (dead) => {
      const accounts = await money.leases.reclaim(dead);
      log.warn({ instance: dead, accounts }, 'reclaimed the credit leases of a dead instance');
      const follows = (await hooks?.claimFollowsOf?.(dead)) ?? 0;
      if (follows > 0) log.warn({ instance: dead, follows }, 'took over the open follows of a dead instance');
    },
  }).catch(async (err: unknown) => {
    await row.stop().catch(() => undefined);
    throw err;
  });
  late.cluster = cluster;
  const leasePurse = purse;
  async function unfenceAfterFlush(): Promise<void> {
    try {
      await hooks?.flush();
      if (!declaredDead) leasePurse.unfence();
    } catch (err: unknown) {
      log.error({ err }, 'could not write settlements after rejoining; still not spending leases');
    }
  }

  cluster.broadcast.on('lease-recall', async (n, delivery) => {
    if (delivery.kind === 'local') return;
    const account = hooks?.account(n.accountId);
    if (account === undefined) return;
    // What was spent here stays leased in the store until its settlement is written: write it,
    // so the asker sees the balance left and only in-flight reservations still leased.
    // With the store away the flush fails: give back what is unused all the same (the release
    // fails too and is counted as ours again); the asker is answered either way.
    await hooks
      ?.flush()
      .catch((err: unknown) => log.warn({ err }, 'could not write settlements before giving credit back'));
    await leasePurse.giveBack(account);
  });
  cluster.broadcast.on('account', async (n) => {
    await hooks?.reloadAccount(n.id);
  });
  cluster.broadcast.on('key', async (n) => {
    await hooks?.reloadKey(n.id);
  });

  // Fencing on silence: beats failing for fenceAfterMs means survivors may soon reclaim.
  let silentFence = false;
  const watch = setInterval(() => {
    const s = cluster.heartbeat.state();
    const failingFor = s.kind === 'failing' ? clock() - s.since : 0;
    if (failingFor > fenceAfterMs && !silentFence) {
      silentFence = true;
      leasePurse.fence();
      log.error(
        { failingForMs: failingFor },
        'Redis unreachable: spending no leased credit until it is back',
      );
    } else if (s.kind === 'beating' && silentFence) {
      silentFence = false;
      if (!declaredDead) void unfenceAfterFlush();
    }
  }, 250);
  watch.unref();

  const idle = setInterval(() => {
    if (hooks === undefined) return;
    void leasePurse
      .releaseIdle(hooks.account)
      .catch((err: unknown) => log.error({ err }, 'idle lease release failed'));
  }, IDLE_SWEEP_MS);
  idle.unref();

  // Leases of instances that vanished while nobody was live to notice (a restart of everything).
  const janitor = setInterval(() => {
    void (async () => {
      if (cluster.heartbeat.state().kind !== 'beating') return;
      const live = new Set(await cluster.heartbeat.liveInstances());
      for (const id of await money.leases.abandoned(STALE_AFTER_MS * 3)) {
        if (live.has(id) || id === instanceId) continue;
        const n = await money.leases.reclaim(id);
        log.warn({ instance: id, accounts: n }, 'reclaimed the credit leases of an instance gone for good');
      }
      await hooks?.claimAbandonedFollows?.();
      await hooks?.replayJournals?.();
    })().catch((err: unknown) => log.error({ err }, 'lease janitor failed'));
  }, JANITOR_MS);
  janitor.unref();

  // A backstop under the notices: a change whose announcement never went out (its instance died
  // before it could send it again) is still picked up within a few minutes.
  let backstops = 0;
  const backstop = setInterval(() => {
    if (hooks === undefined || cluster.heartbeat.state().kind !== 'beating') return;
    backstops++;
    const h = hooks;
    void (async () => {
      await h.reloadKeys();
      if (backstops % 5 === 0) await h.reloadAccounts();
    })().catch((err: unknown) => log.warn({ err }, 'periodic reconcile with the store failed'));
  }, BACKSTOP_MS);
  backstop.unref();

  let stopping: Promise<void> | undefined;
  return {
    instanceId,
    cluster,
    purse: leasePurse,
    sink: money.deltaSink(instanceId, clock),
    money,
    attach(h) {
      hooks = h;
    },
    async announce(notice) {
      const r = await cluster.broadcast.publishAndWait(notice, { timeoutMs: ANNOUNCE_TIMEOUT_MS });
      if (r.kind === 'timeout')
        log.warn({ notice, missing: r.missing }, 'some instances did not confirm a change in time');
    },
    stop: () =>
      (stopping ??= (async () => {
        clearInterval(watch);
        clearInterval(idle);
        clearInterval(janitor);
        clearInterval(backstop);
        await leasePurse
          .releaseAll()
          .catch((err: unknown) => log.error({ err }, 'could not give leases back'));
        await cluster.stop();
        await row.stop().catch((err: unknown) => log.error({ err }, 'could not remove the instance row'));
      })()),
  };
}
