/**
 * The Redis link shared by the cluster mechanics (broadcast, heartbeat, global limiter, once):
 * one command connection, one subscriber connection, a key prefix, Lua scripts that survive a
 * server restarted empty, and hooks that tell the mechanics when to re-announce themselves.
 *
 * Client: ioredis 6 (MIT, maintained under the Redis organisation, `engines: node >=20`, runs on
 * Node 20 and 24, ships its own types, six small dependencies). Chosen over node-redis because
 * its connection lifecycle is explicit and fully configurable in one place: an unbounded retry
 * strategy we write ourselves, an offline queue we can switch off (callers get an error at once
 * instead of piling up requests while Redis is away), per-command timeouts, and 'ready' events on
 * every reconnection that we use to re-subscribe and re-register. We pin RESP2 (`protocol: 2`):
 * nothing here needs RESP3, and RESP2 works with every server a deployment may point at.
 *
 * Guarantees: `connectRedis` either returns a link whose both connections are ready, or throws
 * one `RedisStartupError` naming host and port (never the password) within `startupTimeoutMs`.
 * After that, a lost connection never throws out of this module: commands fail fast with an
 * error while it is down, the link reconnects forever (bounded backoff), scripts are re-sent
 * when the server forgot them (NOSCRIPT), and channels are re-subscribed.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { LuaScript } from './lua-script.js';

export interface RedisSettings {
  /** `host:port` (`[v6addr]:port` for IPv6); the port defaults to 6379. */
  readonly addr: string;
  readonly password?: string | undefined;
  readonly db: number;
  /** Prepended to every key and channel, so several deployments can share one Redis. */
  readonly keyPrefix?: string;
  /** Longest wait for the first connection before start-up fails (default 5000 ms). */
  readonly startupTimeoutMs?: number;
  /** A command with no reply after this long fails (default 1000 ms): Redis is never waited on. */
  readonly commandTimeoutMs?: number;
  /** Longest pause between two reconnection attempts (default 1000 ms). */
  readonly maxBackoffMs?: number;
  /** Shown in CLIENT LIST, e.g. the instance id. */
  readonly name?: string;
}

/** The slice of a pino logger this folder uses (pino's Logger fits). */
export interface ClusterLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export const silentLog: ClusterLog = { info: () => {}, warn: () => {}, error: () => {} };

export type LinkState =
  | { readonly kind: 'up' }
  | { readonly kind: 'down'; readonly since: number; readonly error: string }
  | { readonly kind: 'closed' };

export class RedisStartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedisStartupError';
  }
}

export function parseRedisAddr(addr: string): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+))(?::(\d{1,5}))?$/.exec(addr.trim());
  const host = match?.[1] ?? match?.[2];
  const port = match?.[3] === undefined ? 6379 : Number(match[3]);
  if (host === undefined || port < 1 || port > 65_535) {
    throw new RedisStartupError(`REDIS_ADDR must be host:port, got "${addr}"`);
  }
  return { host, port };
}

type Listener = () => void;

export class ClusterRedis {
  private readonly channels = new Map<string, (message: string) => void>();
  private readonly reconnected = new Set<Listener>();
  private readonly resubscribed = new Set<Listener>();
  private link: LinkState;
  private subscriberDown: boolean;
  private closing = false;

  /** @internal Built by `connectRedis` once both connections are ready. */
  constructor(
    /** Plain commands; fails fast (no offline queue) while Redis is unreachable. */
    readonly commands: Redis,
    private readonly subscriber: Redis,
    readonly prefix: string,
    readonly where: string,
    private readonly log: ClusterLog,
  ) {
    // Both were ready when connectRedis returned, unless one dropped again in between.
    this.link =
      commands.status === 'ready'
        ? { kind: 'up' }
        : { kind: 'down', since: Date.now(), error: 'reconnecting' };
    this.subscriberDown = subscriber.status !== 'ready';
    commands.on('close', () => this.lost('commands'));
    commands.on('error', (err: Error) => this.failed('commands', err));
    commands.on('ready', () => this.restored());
    subscriber.on('close', () => this.lost('subscriber'));
    subscriber.on('error', (err: Error) => this.failed('subscriber', err));
    subscriber.on('ready', () => void this.resubscribe());
    subscriber.on('message', (channel: string, message: string) => this.dispatch(channel, message));
  }

  /** `proxyxai:` + parts joined by `:`. */
  key(...parts: readonly (string | number)[]): string {
    return this.prefix + parts.join(':');
  }

  script(lua: string): LuaScript {
    return new LuaScript(this.commands, lua);
  }

  state(): LinkState {
    return this.link;
  }

  /** Round trip time in milliseconds; rejects when Redis does not answer. */
  async ping(): Promise<number> {
    const started = performance.now();
    await this.commands.ping();
    return performance.now() - started;
  }

  /** One handler per channel (the full, prefixed name); kept across reconnections. */
  async subscribe(channel: string, onMessage: (message: string) => void): Promise<void> {
    this.channels.set(channel, onMessage);
    await this.subscriber.subscribe(channel);
  }

  async unsubscribe(channel: string): Promise<void> {
    this.channels.delete(channel);
    if (this.subscriber.status === 'ready') await this.subscriber.unsubscribe(channel);
  }

  /** Called each time the command connection is back after a loss (not at start-up). */
  onReconnected(listener: Listener): () => void {
    this.reconnected.add(listener);
    return () => this.reconnected.delete(listener);
  }

  /**
   * Called each time the subscriber is back AND subscribed again after a loss: messages
   * published meanwhile are lost, so listeners re-read what they track.
   */
  onResubscribed(listener: Listener): () => void {
    this.resubscribed.add(listener);
    return () => this.resubscribed.delete(listener);
  }

  /** Closes both connections (QUIT, bounded to 1 s, then a hard disconnect). Idempotent. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.link = { kind: 'closed' };
    await Promise.all([quit(this.commands), quit(this.subscriber)]);
  }

  private lost(which: 'commands' | 'subscriber'): void {
    if (this.closing) return;
    if (which === 'subscriber') {
      this.subscriberDown = true;
      return;
    }
    if (this.link.kind === 'up') {
      this.link = { kind: 'down', since: Date.now(), error: 'connection closed' };
      this.log.warn({ redis: this.where }, 'Redis connection lost; reconnecting');
    }
  }

  private failed(which: 'commands' | 'subscriber', err: Error): void {
    // Remembered, not logged: one line when the link is lost and one when it is back, however
    // many attempts fail between. Only the message: a handshake error may carry AUTH's arguments.
    if (which === 'commands' && !this.closing && this.link.kind === 'down') {
      this.link = { ...this.link, error: err.message };
    }
  }

  private restored(): void {
    if (this.closing || this.link.kind !== 'down') return;
    const { since, error } = this.link;
    this.log.info(
      { redis: this.where, downMs: Date.now() - since, lastError: error },
      'Redis connection restored',
    );
    this.link = { kind: 'up' };
    for (const listener of [...this.reconnected]) callSafely(listener, this.log, 'reconnected');
  }

  private dispatch(channel: string, message: string): void {
    try {
      this.channels.get(channel)?.(message);
    } catch (err) {
      // A throwing handler must not unwind into the client's reply parser.
      this.log.error({ channel, error: messageOf(err) }, 'Redis message handler failed');
    }
  }

  private async resubscribe(): Promise<void> {
    if (this.closing || !this.subscriberDown) return;
    try {
      if (this.channels.size > 0) await this.subscriber.subscribe(...this.channels.keys());
    } catch (err) {
      // Lost again before it finished: the next 'ready' tries again.
      this.log.warn({ redis: this.where, error: messageOf(err) }, 'Redis re-subscription failed');
      return;
    }
    this.subscriberDown = false;
    for (const listener of [...this.resubscribed]) callSafely(listener, this.log, 'resubscribed');
  }
}

/**
 * Opens both connections and waits (bounded) until they are ready. Reconnection is unbounded
 * afterwards; only the first connection has a deadline, so a wrong REDIS_ADDR stops start-up.
 */
export async function connectRedis(
  settings: RedisSettings,
  log: ClusterLog = silentLog,
): Promise<ClusterRedis> {
  const { host, port } = parseRedisAddr(settings.addr);
  const where = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const startupTimeoutMs = settings.startupTimeoutMs ?? 5_000;
  const maxBackoffMs = settings.maxBackoffMs ?? 1_000;
  const options = {
    host,
    port,
    db: settings.db,
    ...(settings.password !== undefined && { password: settings.password }),
    ...(settings.name !== undefined && { connectionName: settings.name }),
    protocol: 2,
    lazyConnect: true,
    connectTimeout: Math.min(2_000, startupTimeoutMs),
    commandTimeout: settings.commandTimeoutMs ?? 1_000,
    // Exponential from 50 ms, capped, with jitter so that N instances do not reconnect in step.
    retryStrategy: (times) =>
      Math.min(maxBackoffMs, 50 * 2 ** Math.min(times, 10)) * (0.8 + 0.2 * Math.random()),
    // Fail fast while down: a request must not wait for Redis, and a command must not be sent
    // twice (INCR in a script) because it was replayed after a reconnection.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    // We re-subscribe ourselves, to know when it is done (see ClusterRedis.onResubscribed).
    autoResubscribe: false,
  } satisfies RedisOptions;
  const commands = new Redis(options);
  const subscriber = new Redis(options);
  let lastError = 'no answer';
  const noteError = (err: Error): void => {
    lastError = err.message;
  };
  commands.on('error', noteError);
  subscriber.on('error', noteError);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      Promise.all([readyOnce(commands), readyOnce(subscriber)]),
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new RedisStartupError(
                `cannot connect to Redis at ${where} within ${startupTimeoutMs} ms: ${lastError}`,
              ),
            ),
          startupTimeoutMs,
        );
      }),
    ]);
  } catch (err) {
    // noteError stays attached: late errors of the dying connections are swallowed, not printed.
    commands.disconnect();
    subscriber.disconnect();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  commands.off('error', noteError);
  subscriber.off('error', noteError);
  return new ClusterRedis(commands, subscriber, settings.keyPrefix ?? 'proxyxai:', where, log);
}

function readyOnce(redis: Redis): Promise<void> {
  // connect()'s own promise rejects on the first failed attempt; the retry strategy goes on
  // trying in the background, so we wait for 'ready' instead (the caller bounds the wait).
  redis.connect().catch(() => {});
  return new Promise((resolve) => redis.once('ready', () => resolve()));
}

async function quit(redis: Redis): Promise<void> {
  if (redis.status === 'ready') {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      redis.quit().catch(() => {}),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, 1_000))),
    ]);
    clearTimeout(timer);
  }
  redis.disconnect();
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function callSafely(listener: Listener, log: ClusterLog, what: string): void {
  try {
    listener();
  } catch (err) {
    log.error({ error: messageOf(err) }, `Redis ${what} listener failed`);
  }
}
