/**
 * The cluster mechanics assembled, for the composition root: one call when REDIS_ADDR is set,
 * one `stop()` at shutdown. Nothing here is global; every piece is also usable on its own.
 *
 * Start order matters: the broadcast subscribes before the heartbeat registers, so an instance
 * that others see as live can already confirm acknowledged broadcasts. Stop runs in reverse:
 * deregister first (nobody waits for us any more), then unsubscribe, then close the link.
 */
import type { Config } from '../config/config.js';
import { Broadcast, type BroadcastOptions } from './broadcast.js';
import { GlobalLimiter, type GlobalLimiterOptions } from './global-limiter.js';
import { Heartbeat, newInstanceId, type HeartbeatOptions } from './heartbeat.js';
import { Once } from './once.js';
import { connectRedis, silentLog, type ClusterLog, type ClusterRedis, type RedisSettings } from './redis.js';

export interface ClusterOptions {
  readonly redis: RedisSettings;
  readonly log?: ClusterLog;
  /** Re-read a topic from the system of record (see broadcast.ts). */
  readonly reconcile: BroadcastOptions['reconcile'];
  readonly onInstanceDead?: HeartbeatOptions['onInstanceDead'];
  readonly onSelf?: HeartbeatOptions['onSelf'];
  readonly heartbeat?: Pick<HeartbeatOptions, 'intervalMs' | 'deadAfterMs' | 'claimMs'>;
  readonly limiter?: Omit<GlobalLimiterOptions, 'log'>;
  readonly broadcast?: Pick<BroadcastOptions, 'retryMs'>;
  readonly instanceId?: string;
}

export interface Cluster {
  readonly instanceId: string;
  readonly redis: ClusterRedis;
  readonly heartbeat: Heartbeat;
  readonly broadcast: Broadcast;
  readonly limiter: GlobalLimiter;
  readonly once: Once;
  /** Deregisters, unsubscribes, closes. Idempotent. */
  stop(): Promise<void>;
}

/** The Redis settings of the config, or undefined when this instance runs alone. */
export function redisSettingsFromConfig(
  config: Pick<Config, 'redisAddr' | 'redisPass' | 'redisDb'>,
): RedisSettings | undefined {
  if (config.redisAddr === undefined) return undefined;
  return { addr: config.redisAddr, password: config.redisPass, db: config.redisDb };
}

/** Connects (bounded: throws RedisStartupError), subscribes, registers. */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const log = options.log ?? silentLog;
  const instanceId = options.instanceId ?? newInstanceId();
  const redis = await connectRedis({ name: `proxyxai-${instanceId}`, ...options.redis }, log);
  const heartbeat = new Heartbeat(redis, {
    ...options.heartbeat,
    instanceId,
    log,
    ...(options.onInstanceDead !== undefined && { onInstanceDead: options.onInstanceDead }),
    ...(options.onSelf !== undefined && { onSelf: options.onSelf }),
  });
  const broadcast = new Broadcast(redis, {
    instanceId,
    instances: heartbeat,
    reconcile: options.reconcile,
    log,
  });
  try {
    await broadcast.start();
    await heartbeat.start();
  } catch (err) {
    await broadcast.stop();
    await redis.close();
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return {
    instanceId,
    redis,
    heartbeat,
    broadcast,
    limiter: new GlobalLimiter(redis, { ...options.limiter, log }),
    once: new Once(redis),
    stop: () =>
      (stopping ??= (async () => {
        await heartbeat.stop();
        await broadcast.stop();
        await redis.close();
      })()),
  };
}
