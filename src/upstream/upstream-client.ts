/**
 * The upstream HTTP client: one undici Pool (keep-alive connections) to OPENAI_API_BASE. It sends
 * one attempt and reports what came back; deciding about retries is the caller's job.
 *
 * It drives the pool with `dispatch` and a handler of its own rather than `request()`: the body
 * then reaches the relay as plain callbacks (see upstream-body.ts), and cancellation is one
 * `controller.abort()`. `request()` wraps every response in a Readable stream, a promise and an
 * AbortSignal listener, which the heap profile showed as about a third of the gateway's
 * per-request garbage.
 */
import { createRequire } from 'node:module';
import type { Dispatcher, Pool as PoolType } from 'undici';
import { AttemptWatchdog, type Watched } from './attempt-watchdog.js';
import type { Cancel } from './cancel.js';
import { UpstreamBody, type BodyControl } from './upstream-body.js';

/**
 * undici's Pool, loaded on its own: the package index also loads fetch, WebSocket, EventSource,
 * the cache and the mock agents, about 10 MB of resident memory the gateway never uses. undici has
 * no `exports` map, so this path is public in practice; the upstream tests fail if it moves.
 */
const Pool = createRequire(import.meta.url)('undici/lib/dispatcher/pool.js') as typeof PoolType;

/** undici's documented error codes for an attempt that ran out of time. */
const TIMEOUT_CODES: ReadonlySet<unknown> = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

/**
 * Headers timeouts up to this long get a timer of their own (exact; rare: the last attempt before
 * the overall deadline, or a small setting); longer ones are checked by the watchdog.
 */
const OWN_TIMER_UP_TO_MS = 1_000;

// The errors undici itself raised for these timeouts (same names and codes), now raised here.
class HeadersTimeoutError extends Error {
  override readonly name = 'HeadersTimeoutError';
  readonly code = 'UND_ERR_HEADERS_TIMEOUT';
  constructor() {
    super('Headers Timeout Error');
  }
}

class BodyTimeoutError extends Error {
  override readonly name = 'BodyTimeoutError';
  readonly code = 'UND_ERR_BODY_TIMEOUT';
  constructor() {
    super('Body Timeout Error');
  }
}

export interface UpstreamRequest {
  readonly method: string;
  /** Path and query, e.g. `/v1/chat/completions?x=1` (base path is prepended here). */
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: Buffer | undefined;
  readonly cancel: Cancel;
  /** Time allowed until response headers arrive for this attempt. */
  readonly headersTimeoutMs: number;
}

/** Response headers as undici parses them (lower-case names). */
export type UpstreamHeaders = Record<string, string | string[] | undefined>;

export interface UpstreamResponse {
  readonly statusCode: number;
  readonly headers: UpstreamHeaders;
  readonly body: UpstreamBody;
}

export type AttemptResult =
  | { readonly kind: 'response'; readonly response: UpstreamResponse }
  | {
      readonly kind: 'network-error';
      readonly reason: string;
      readonly timeout: boolean;
      readonly aborted: boolean;
    };

export class UpstreamClient {
  private readonly pool: PoolType;
  private readonly watchdog: AttemptWatchdog;

  constructor(
    origin: string,
    private readonly basePath: string,
    opts: { connectTimeoutMs: number; idleTimeoutMs: number; connections: number },
  ) {
    this.pool = new Pool(origin, {
      // Unbounded by default: every concurrent stream holds its own HTTP/1.1 connection, and a cap
      // would queue streams behind each other.
      connections: opts.connections === 0 ? null : opts.connections,
      connect: { timeout: opts.connectTimeoutMs },
      // The headers and body timeouts are the watchdog's (attempt-watchdog.ts says why).
      headersTimeout: 0,
      bodyTimeout: 0,
      keepAliveTimeout: 30_000,
      pipelining: 1,
    });
    this.watchdog = new AttemptWatchdog(
      opts.idleTimeoutMs,
      Math.max(10, Math.min(250, Math.floor(opts.idleTimeoutMs / 4))),
    );
  }

  send(req: UpstreamRequest): Promise<AttemptResult> {
    return new Promise((resolve) => {
      const attempt = new Attempt(resolve, req.cancel, this.watchdog, req.headersTimeoutMs);
      req.cancel.onAbort(() => attempt.cancel());
      this.pool.dispatch(
        {
          method: req.method as Dispatcher.HttpMethod,
          path: this.basePath + req.path,
          headers: req.headers,
          body: req.body ?? null,
          headersTimeout: 0,
        },
        attempt,
      );
    });
  }

  close(): Promise<void> {
    this.watchdog.stop();
    return this.pool.close();
  }

  destroy(): Promise<void> {
    this.watchdog.stop();
    return this.pool.destroy();
  }
}

class CancelledError extends Error {
  override readonly name = 'CancelledError';
  constructor() {
    super('the client request was cancelled');
  }
}

/**
 * One attempt's dispatch handler: resolves once with the response head or the failure. It is also
 * what the body pauses and resumes through, so the watchdog knows when a silence is the gateway's
 * own back-pressure.
 */
class Attempt implements Dispatcher.DispatchHandler, Watched, BodyControl {
  private controller: Dispatcher.DispatchController | undefined;
  private body: UpstreamBody | undefined;
  private resolved = false;
  private ownTimer: NodeJS.Timeout | undefined;
  /** Ran out of time before undici started it: aborted as soon as it does. */
  private expired: Error | undefined;
  // Watched (the watchdog's fields).
  headersBy = 0;
  chunks = 0;
  paused = false;
  seenChunks = 0;
  quietSince = 0;
  phase: 'headers' | 'body' = 'headers';
  prev: Watched | undefined = undefined;
  next: Watched | undefined = undefined;

  constructor(
    private readonly resolve: (r: AttemptResult) => void,
    private readonly cancelled: Cancel,
    private readonly watchdog: AttemptWatchdog,
    headersTimeoutMs: number,
  ) {
    if (headersTimeoutMs <= OWN_TIMER_UP_TO_MS) {
      this.ownTimer = setTimeout(() => this.expire('headers'), headersTimeoutMs);
    } else {
      this.headersBy = performance.now() + headersTimeoutMs;
      watchdog.watch(this);
    }
  }

  /** The client left: stop the attempt wherever it is. */
  cancel(): void {
    this.stopWatching();
    this.controller?.abort(new CancelledError());
    this.finish({ kind: 'network-error', reason: 'CancelledError', timeout: false, aborted: true });
  }

  expire(kind: 'headers' | 'body'): void {
    const err = kind === 'headers' ? new HeadersTimeoutError() : new BodyTimeoutError();
    this.stopWatching();
    if (this.controller !== undefined) {
      this.controller.abort(err);
      return;
    }
    // Still queued in the pool: it fails now, and is aborted once undici gets to it.
    this.expired = err;
    this.finish({ kind: 'network-error', reason: `${err.name}: ${err.code}`, timeout: true, aborted: false });
  }

  // BodyControl: the relay's back-pressure and its discarding of the body.
  pause(): void {
    this.paused = true;
    this.controller?.pause();
  }

  resume(): void {
    if (this.paused) this.watchdog.resumed(this);
    this.controller?.resume();
  }

  abort(reason: Error): void {
    this.controller?.abort(reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // Cancelled or out of time while waiting in the pool's queue.
    if (this.cancelled.aborted) controller.abort(new CancelledError());
    else if (this.expired !== undefined) controller.abort(this.expired);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: UpstreamHeaders,
  ): void {
    // undici keeps the raw header buffers on the controller for the whole response (a dozen small
    // buffers, ~3 kB per stream in flight); the parsed `headers` are all the gateway reads.
    controller.rawHeaders = null;
    // 1xx informational heads are not the response.
    if (statusCode < 200) return;
    if (this.ownTimer !== undefined) {
      clearTimeout(this.ownTimer);
      this.ownTimer = undefined;
      this.watchdog.watch(this);
    }
    this.watchdog.bodyStarted(this);
    const body = new UpstreamBody(this);
    this.body = body;
    this.finish({ kind: 'response', response: { statusCode, headers, body } });
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.chunks++;
    this.body?.push(chunk);
  }

  onResponseEnd(): void {
    this.stopWatching();
    this.body?.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    this.stopWatching();
    if (this.body !== undefined) {
      this.body.fail(err);
      return;
    }
    const code = (err as { code?: unknown }).code;
    const timeout = TIMEOUT_CODES.has(code);
    const reason = `${err.name}: ${typeof code === 'string' ? code : err.message}`;
    this.finish({ kind: 'network-error', reason, timeout, aborted: this.cancelled.aborted });
  }

  private stopWatching(): void {
    if (this.ownTimer !== undefined) {
      clearTimeout(this.ownTimer);
      this.ownTimer = undefined;
    }
    this.watchdog.unwatch(this);
  }

  private finish(result: AttemptResult): void {
    if (this.resolved) return;
    this.resolved = true;
    this.resolve(result);
  }
}
