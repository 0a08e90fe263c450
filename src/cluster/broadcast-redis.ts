/**
 * The Redis side of broadcasts: the Lua scripts (each one atomic, one round trip) and the wait of
 * an acknowledged broadcast. Keys: `bc:epoch` (random, created once per Redis lifetime, so that a
 * receiver sees a server restarted empty), `bc:version:<topic>` (INCR), `bc:applied:<instance>`
 * (hash topic -> highest version that instance applied).
 */
import { randomBytes } from 'node:crypto';
import type { Topic } from './notices.js';
import { messageOf, type ClusterLog, type ClusterRedis } from './redis.js';

export interface BroadcastKeys {
  readonly channel: string;
  readonly epoch: string;
  readonly version: (topic: Topic) => string;
  readonly applied: (instanceId: string) => string;
}

export function broadcastKeys(redis: ClusterRedis): BroadcastKeys {
  return {
    channel: redis.key('bc', 'notices'),
    epoch: redis.key('bc', 'epoch'),
    version: (topic) => redis.key('bc', 'version', topic),
    applied: (instanceId) => redis.key('bc', 'applied', instanceId),
  };
}

export function broadcastScripts(redis: ClusterRedis) {
  return {
    publish: redis.script(PUBLISH),
    baseline: redis.script(BASELINE),
    ack: redis.script(ACK),
    applied: redis.script(APPLIED),
  };
}

/** A day: the hash of an instance that vanished without a word goes away by itself. */
export const ACK_TTL_MS = 86_400_000;

/** A candidate epoch; the first one written in a Redis lifetime stays. */
export function newEpoch(): string {
  return randomBytes(8).toString('hex');
}

// KEYS: version of the topic, epoch. ARGV: channel, body, epoch to create if there is none.
const PUBLISH = `
local epoch = redis.call('GET', KEYS[2])
if not epoch then epoch = ARGV[3]; redis.call('SET', KEYS[2], epoch) end
local v = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], epoch .. ' ' .. v .. ' ' .. ARGV[2])
return v`;

// KEYS: epoch, then the version of each topic. ARGV: epoch to create if there is none.
const BASELINE = `
local epoch = redis.call('GET', KEYS[1])
if not epoch then epoch = ARGV[1]; redis.call('SET', KEYS[1], epoch) end
local out = {epoch}
for i = 2, #KEYS do out[i] = tonumber(redis.call('GET', KEYS[i]) or '0') end
return out`;

// KEYS: this instance's hash. ARGV: ttl, then topic/version pairs.
const ACK = `
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1`;

// KEYS: the hashes of the instances awaited. ARGV: topic.
const APPLIED = `
local out = {}
for i = 1, #KEYS do out[i] = tonumber(redis.call('HGET', KEYS[i], ARGV[1]) or '0') end
return out`;

export type WaitResult =
  | {
      readonly kind: 'confirmed';
      readonly version: number;
      /** This instance first, then every other that confirmed. */
      readonly confirmed: readonly string[];
      /** Instances live at publication that stopped being live while we waited (not awaited). */
      readonly departed: readonly string[];
    }
  | {
      readonly kind: 'timeout';
      readonly version: number;
      readonly confirmed: readonly string[];
      /** Still live, still not confirmed when the time was up. */
      readonly missing: readonly string[];
      readonly departed: readonly string[];
    };

export interface ConfirmationWait {
  readonly self: string;
  /** The other instances that were live when the notice was published. */
  readonly awaited: readonly string[];
  readonly version: number;
  readonly deadline: number;
  /** The version each instance has applied for the notice's topic, in the order asked. */
  readonly appliedVersions: (ids: readonly string[]) => Promise<readonly number[]>;
  readonly liveInstances: () => Promise<readonly string[]>;
  readonly log: ClusterLog;
}

/**
 * Polls (5 ms, doubling to 100 ms) until every awaited instance has applied the version or is no
 * longer live, or the deadline passes. Confirmations usually take a few milliseconds; polling
 * keeps no state in Redis and cannot miss one, unlike an acknowledgement message.
 */
export async function awaitConfirmations(wait: ConfirmationWait): Promise<WaitResult> {
  const { version } = wait;
  const waiting = new Set(wait.awaited);
  const confirmed = [wait.self];
  const departed: string[] = [];
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    if (waiting.size > 0) {
      try {
        const ids = [...waiting];
        const applied = await wait.appliedVersions(ids);
        ids.forEach((id, i) => {
          if ((applied[i] ?? 0) >= version && waiting.delete(id)) confirmed.push(id);
        });
        if (waiting.size > 0) {
          const liveNow = new Set(await wait.liveInstances());
          for (const id of waiting) if (!liveNow.has(id) && waiting.delete(id)) departed.push(id);
        }
      } catch (err) {
        // A Redis hiccup while waiting is not an answer: poll again until the deadline.
        wait.log.warn({ error: messageOf(err) }, 'broadcast: cannot read confirmations');
      }
    }
    if (waiting.size === 0) return { kind: 'confirmed', version, confirmed, departed };
    const left = wait.deadline - Date.now();
    if (left <= 0) return { kind: 'timeout', version, confirmed, missing: [...waiting], departed };
    await new Promise((resolve) => setTimeout(resolve, Math.min(delay, left)));
  }
}
