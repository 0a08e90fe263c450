/**
 * Several gateway "instances" in one test process: each is a full `startCluster` (its own Redis
 * link, heartbeat and broadcast) that records what it received, against a private redis-server.
 * Each test passes its own key prefix, so tests sharing a server never see each other's keys.
 */
import type { Delivery, Notice, Topic } from '../../src/cluster/notices.js';
import type { ReconcileReason } from '../../src/cluster/broadcast.js';
import { startCluster, type Cluster } from '../../src/cluster/cluster.js';
import type { SelfEvent } from '../../src/cluster/heartbeat.js';
import type { ClusterLog } from '../../src/cluster/redis.js';

export interface TestNode extends Cluster {
  readonly received: Array<{ readonly notice: Notice; readonly delivery: Delivery }>;
  readonly reconciles: Array<{ readonly topic: Topic; readonly reason: ReconcileReason }>;
  readonly deaths: string[];
  readonly selfEvents: SelfEvent[];
  readonly logs: Array<{ readonly level: string; readonly msg: string; readonly obj: object }>;
}

export interface NodeOptions {
  readonly intervalMs?: number;
  readonly deadAfterMs?: number;
  readonly claimMs?: number;
  /** Runs on each death this node handles (after it is recorded). */
  readonly onDead?: (id: string) => void | Promise<void>;
  /** Runs on each reconcile (after it is recorded); throw to make it fail. */
  readonly onReconcile?: (topic: Topic, reason: ReconcileReason) => void | Promise<void>;
}

let prefixes = 0;
/** A key prefix no other test of this process uses. */
export function uniquePrefix(): string {
  prefixes += 1;
  return `test${process.pid}-${prefixes}:`;
}

export async function startNode(addr: string, prefix: string, options: NodeOptions = {}): Promise<TestNode> {
  const received: TestNode['received'] = [];
  const reconciles: TestNode['reconciles'] = [];
  const deaths: string[] = [];
  const selfEvents: SelfEvent[] = [];
  const logs: TestNode['logs'] = [];
  const log: ClusterLog = {
    info: (obj, msg) => logs.push({ level: 'info', msg, obj }),
    warn: (obj, msg) => logs.push({ level: 'warn', msg, obj }),
    error: (obj, msg) => logs.push({ level: 'error', msg, obj }),
  };
  const cluster = await startCluster({
    redis: { addr, db: 0, keyPrefix: prefix, startupTimeoutMs: 3_000, maxBackoffMs: 200 },
    log,
    reconcile: async (topic, reason) => {
      reconciles.push({ topic, reason });
      await options.onReconcile?.(topic, reason);
    },
    onInstanceDead: async (id) => {
      deaths.push(id);
      await options.onDead?.(id);
    },
    onSelf: (event) => selfEvents.push(event),
    broadcast: { retryMs: 100 },
    heartbeat: {
      intervalMs: options.intervalMs ?? 50,
      deadAfterMs: options.deadAfterMs ?? 300,
      claimMs: options.claimMs ?? 2_000,
    },
  });
  const record = (notice: Notice, delivery: Delivery): void => {
    received.push({ notice, delivery });
  };
  cluster.broadcast.on('account', record);
  cluster.broadcast.on('key', record);
  cluster.broadcast.on('lease-recall', record);
  return { ...cluster, received, reconciles, deaths, selfEvents, logs };
}

/** Polls `condition` every 10 ms; rejects with `what` after `timeoutMs`. */
export async function waitUntil(
  what: string,
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await condition()) return Date.now() - started;
    if (Date.now() - started > timeoutMs)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
