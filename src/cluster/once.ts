/**
 * "Do this once cluster-wide": the first instance to claim a name (SET NX with an expiry) does
 * the work; the others skip it. Meant for notices such as the monthly soft-limit e-mail: name the
 * period in the key (`soft-limit:42:2026-11`) and give an expiry past the period's end.
 *
 * Guarantees: at most one holder of a name at a time, for as long as Redis keeps the key. Redis
 * holds nothing that cannot be lost (a server restarted empty forgets the claims), so this is
 * "once per Redis lifetime": where a repeat would be harmful, record the fact in PostgreSQL too.
 * A claim whose work failed is given back (`run`), so that a later attempt may try again.
 */
import { randomBytes } from 'node:crypto';
import type { ClusterRedis } from './redis.js';

export type OnceResult<T> = { readonly kind: 'ran'; readonly value: T } | { readonly kind: 'skipped' };

export interface OnceClaim {
  readonly name: string;
  /** Gives the claim back, if it is still ours (a later claimant's is never removed). */
  release(): Promise<void>;
}

// KEYS: the claim. ARGV: our token. Deletes it only if it is still ours.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

export class Once {
  private readonly release;

  constructor(private readonly redis: ClusterRedis) {
    this.release = redis.script(RELEASE);
  }

  /** Resolves with the claim when this caller is the first, undefined when someone else was. */
  async claim(name: string, ttlMs: number): Promise<OnceClaim | undefined> {
    const key = this.redis.key('once', name);
    const token = randomBytes(8).toString('hex');
    const set = await this.redis.commands.set(key, token, 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX');
    if (set !== 'OK') return undefined;
    return {
      name,
      release: async () => {
        await this.release.run([key], [token]);
      },
    };
  }

  /**
   * Runs `work` if this caller claims `name` first. If `work` throws, the claim is given back and
   * the error rethrown. Rejects without running `work` when Redis cannot be reached.
   */
  async run<T>(name: string, ttlMs: number, work: () => Promise<T>): Promise<OnceResult<T>> {
    const claim = await this.claim(name, ttlMs);
    if (claim === undefined) return { kind: 'skipped' };
    try {
      return { kind: 'ran', value: await work() };
    } catch (err) {
      await claim.release().catch(() => {});
      throw err;
    }
  }
}
