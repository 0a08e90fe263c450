/**
 * The object directory over Redis (the contract is tenancy/object-directory.ts): every instance
 * publishes the objects it creates and the deletions it makes, and looks objects up here before
 * the store, so an object created on one instance is found on every other one at once, long
 * before the creator's state writer stores its row (≤ FLUSH_INTERVAL_MS later), and a deletion is
 * seen everywhere at once.
 *
 * Keys (after the link's prefix):
 *   obj:o:<id>                 the object's owner, kind, key, group, creation time and tag (JSON),
 *                              for `ttlMs` (10 min): far longer than a flush takes, after which the
 *                              store has the row and answers; a lookup that had to read the store
 *                              puts the object back for another `ttlMs`;
 *   obj:x:<id>                 its deletion time, for 2 × `ttlMs`: longer than any publication of
 *                              the object that may have raced with the deletion, so a deleted
 *                              object never looks live again;
 *   obj:n:<account>:<kind>     sorted set of the ids created within `recentMs` (30 s), scored by
 *                              creation time: what a list merges into the store's page (only kinds
 *                              that are listed; responses, the bulk of creations, are not).
 *
 * Redis holds nothing the store does not get too (each instance's writer stores the rows), so a
 * Redis restarted empty loses only the head start. Every method answers "could not" instead of
 * throwing (one warning per outage), and the registry falls back to the store. A deletion that
 * could not be published is sent again once Redis answers (an instance cut off from Redis while
 * the others still read it must not leave them a live entry of an object it deleted).
 */
import { isObjectKind, OBJECT_KINDS, type ObjectKind } from '../tenancy/object-kinds.js';
import type {
  DirectoryEntry,
  ObjectDirectory,
  RecentObjects,
  SharedObject,
} from '../tenancy/object-directory.js';
import { replyArray, replyInt, replyString } from './lua-script.js';
import { messageOf, silentLog, type ClusterLog, type ClusterRedis } from './redis.js';

export interface ObjectDirectoryOptions {
  /** How long a published object stays in Redis (default 600,000 ms). */
  readonly ttlMs?: number;
  /**
   * How long a creation stays in its list's recent index (default 30,000 ms): longer than the
   * state writer may take to store it (pass at least 20 × FLUSH_INTERVAL_MS).
   */
  readonly recentMs?: number;
  /** Most recent objects one list reads per account and kind (default 1000). */
  readonly recentMax?: number;
  readonly log?: ClusterLog;
  readonly clock?: () => number;
}

// KEYS: the object, its list's recent index. ARGV: the object's value, its TTL, its creation time
// (score), its id, the lowest score kept (exclusive, "(<n>"), the index's TTL.
const PUBLISH = `
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 1`;

// KEYS: a recent index. ARGV: lowest score, object key prefix, deletion key prefix, most ids.
// Returns id, value ('' when expired), deleted (0/1) for each, newest first.
const RECENT = `
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('GET', ARGV[2] .. id) or ''
  out[#out + 1] = redis.call('EXISTS', ARGV[3] .. id)
end
return out`;

/** Most deletions kept for a late publication. */
const MAX_UNSENT = 10_000;

export class RedisObjectDirectory implements ObjectDirectory {
  private readonly ttlMs: number;
  private readonly recentMs: number;
  private readonly recentMax: number;
  private readonly log: ClusterLog;
  private readonly clock: () => number;
  private readonly scripts;
  /** Set while Redis fails, so an outage is one warning and one recovery line. */
  private failingSince: number | undefined;
  /** Deletions not published yet (id → time), sent again once Redis answers. */
  private readonly unsent = new Map<string, number>();
  private resending = false;

  constructor(
    private readonly redis: ClusterRedis,
    opts: ObjectDirectoryOptions = {},
  ) {
    this.ttlMs = opts.ttlMs ?? 600_000;
    this.recentMs = opts.recentMs ?? 30_000;
    this.recentMax = opts.recentMax ?? 1_000;
    this.log = opts.log ?? silentLog;
    this.clock = opts.clock ?? Date.now;
    this.scripts = { publish: redis.script(PUBLISH), recent: redis.script(RECENT) };
    redis.onReconnected(() => void this.resend());
  }

  async publish(o: SharedObject): Promise<boolean> {
    const keep = Math.max(1, Math.ceil(this.recentMs));
    return this.attempt(
      'publish',
      async () => {
        if (OBJECT_KINDS[o.kind].byId === undefined) {
          // Never listed (a response, a conversation): no recent index to keep.
          await this.redis.commands.set(this.objectKey(o.id), encode(o), 'PX', this.ttlMs);
        } else {
          await this.scripts.publish.run(
            [this.objectKey(o.id), this.recentKey(o.accountId, o.kind)],
            [encode(o), this.ttlMs, o.createdAt, o.id, `(${o.createdAt - keep}`, keep],
          );
        }
        return true;
      },
      false,
    );
  }

  async publishDeleted(id: string, deletedAt: number): Promise<boolean> {
    const sent = await this.attempt(
      'publish a deletion',
      async () => {
        await this.redis.commands.set(this.deletedKey(id), String(deletedAt), 'PX', 2 * this.ttlMs);
        return true;
      },
      false,
    );
    if (!sent) {
      // Bounded: past it the oldest are dropped (their entries expire with the TTL anyway).
      if (this.unsent.size >= MAX_UNSENT) this.unsent.delete(this.unsent.keys().next().value as string);
      this.unsent.set(id, deletedAt);
    }
    return sent;
  }

  /** Deletions published late, since Redis answers again. */
  get pendingDeletions(): number {
    return this.unsent.size;
  }

  async refresh(o: SharedObject, deletedAt: number | null): Promise<void> {
    await this.attempt(
      'refresh',
      async () => {
        const writes: Array<Promise<unknown>> = [
          this.redis.commands.set(this.objectKey(o.id), encode(o), 'PX', this.ttlMs),
        ];
        if (deletedAt !== null)
          writes.push(
            this.redis.commands.set(this.deletedKey(o.id), String(deletedAt), 'PX', 2 * this.ttlMs),
          );
        await Promise.all(writes);
      },
      undefined,
    );
  }

  async lookup(id: string): Promise<DirectoryEntry | undefined> {
    return this.attempt(
      'look up',
      async () => {
        const [value, deleted] = await this.redis.commands.mget(this.objectKey(id), this.deletedKey(id));
        const at = deleted === null || deleted === undefined ? undefined : Number(deleted);
        return {
          object: value === null || value === undefined ? undefined : decode(id, value),
          deletedAt: at !== undefined && Number.isFinite(at) ? at : undefined,
        };
      },
      undefined,
    );
  }

  async recent(accountId: number, kind: ObjectKind): Promise<RecentObjects | undefined> {
    return this.attempt(
      'read recent objects',
      async () => {
        const reply = replyArray(
          await this.scripts.recent.run(
            [this.recentKey(accountId, kind)],
            [this.clock() - this.recentMs, this.objectKey(''), this.deletedKey(''), this.recentMax],
          ),
        );
        const objects: SharedObject[] = [];
        const deleted = new Set<string>();
        for (let i = 0; i + 2 < reply.length; i += 3) {
          const id = replyString(reply[i]);
          const value = replyString(reply[i + 1]);
          const o = value === '' ? undefined : decode(id, value);
          if (o === undefined) continue;
          objects.push(o);
          if (replyInt(reply[i + 2]) === 1) deleted.add(id);
        }
        return { objects, deleted };
      },
      undefined,
    );
  }

  private objectKey(id: string): string {
    return this.redis.key('obj', 'o', id);
  }

  private deletedKey(id: string): string {
    return this.redis.key('obj', 'x', id);
  }

  private recentKey(accountId: number, kind: string): string {
    return this.redis.key('obj', 'n', accountId, kind);
  }

  /** Sends the deletions that could not be published (one at a time, oldest first). */
  private async resend(): Promise<void> {
    if (this.resending) return;
    this.resending = true;
    try {
      for (const [id, at] of [...this.unsent]) {
        await this.redis.commands.set(this.deletedKey(id), String(at), 'PX', 2 * this.ttlMs);
        if (this.unsent.get(id) === at) this.unsent.delete(id);
      }
    } catch {
      // Still unreachable: the next success or reconnection tries again.
    } finally {
      this.resending = false;
    }
  }

  private async attempt<T>(what: string, work: () => Promise<T>, failed: T): Promise<T> {
    try {
      const result = await work();
      if (this.failingSince !== undefined) {
        this.log.info(
          { downMs: this.clock() - this.failingSince },
          'object directory: Redis answers again; lookups use it again',
        );
        this.failingSince = undefined;
      }
      if (this.unsent.size > 0) void this.resend();
      return result;
    } catch (err: unknown) {
      if (this.failingSince === undefined) {
        this.failingSince = this.clock();
        this.log.warn(
          { error: messageOf(err), during: what },
          'object directory: Redis unreachable; objects are looked up in the store, new ones written to it before they are answered',
        );
      }
      return failed;
    }
  }
}

/** `[kind, account, key, group, createdAt, tag]`: the object without its id (in the key). */
function encode(o: SharedObject): string {
  return JSON.stringify([o.kind, o.accountId, o.keyId, o.keyGroup, o.createdAt, o.tag]);
}

function decode(id: string, value: string): SharedObject | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (!Array.isArray(parsed) || parsed.length !== 6) return undefined;
  const [kind, accountId, keyId, keyGroup, createdAt, tag] = parsed as unknown[];
  if (typeof kind !== 'string' || !isObjectKind(kind)) return undefined;
  if (typeof accountId !== 'number' || typeof keyId !== 'number' || typeof createdAt !== 'number')
    return undefined;
  if ((keyGroup !== null && typeof keyGroup !== 'string') || (tag !== null && typeof tag !== 'string'))
    return undefined;
  return { id, kind, accountId, keyId, keyGroup, createdAt, tag };
}
