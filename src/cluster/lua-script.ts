/**
 * Lua scripts and their replies. Every multi-step operation of this folder is one script, so it
 * is atomic and costs one round trip. A script is sent by digest (EVALSHA) and in full only when
 * the server does not know it (NOSCRIPT: a server restarted empty, or SCRIPT FLUSH), so callers
 * never see the difference.
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/** A Lua script sent by digest (EVALSHA), and in full only when the server does not know it. */
export class LuaScript {
  readonly sha: string;

  constructor(
    private readonly redis: Redis,
    readonly lua: string,
  ) {
    this.sha = createHash('sha1').update(lua).digest('hex');
  }

  async run(keys: readonly string[], args: readonly (string | number)[] = []): Promise<unknown> {
    try {
      return await this.redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      // A restarted (or flushed) server has an empty script cache; EVAL loads it again.
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return this.redis.eval(this.lua, keys.length, ...keys, ...args);
    }
  }
}

/** Script replies arrive as `unknown`; these check their shape instead of trusting it. */
export function replyInt(value: unknown): number {
  const n = typeof value === 'string' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isFinite(n))
    throw new Error(`unexpected Redis reply ${String(value)}`);
  return n;
}

export function replyArray(value: unknown): readonly unknown[] {
  if (!Array.isArray(value)) throw new Error(`unexpected Redis reply ${String(value)}`);
  return value;
}

export function replyString(value: unknown): string {
  if (typeof value !== 'string') throw new Error(`unexpected Redis reply ${String(value)}`);
  return value;
}
