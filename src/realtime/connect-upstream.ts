/**
 * Opens the upstream side of a realtime session with a pool key. A failed handshake is classified
 * like an HTTP attempt (`classifyResponse`, `pool.report`: a 401 `invalid_api_key` retires the key,
 * a 429 cools it, 5xx and network errors count toward ejection) and retried on a *different* key,
 * up to MAX_ATTEMPTS within UPSTREAM_TIMEOUT_MS. Upstream's 400/404 (an unknown model, say) is the
 * client's own error: answered as such, not retried.
 *
 * The client's upgrade is completed only after this succeeds, so every failure can still be
 * answered with a plain HTTP error; once the session runs, its key never changes.
 */
import type { IncomingMessage } from 'node:http';
import type { WebSocket } from 'ws';
import { ws } from './ws-lib.js';
import { GatewayError } from '../errors/catalogue.js';
import type { KeyPool, PoolKey } from '../keys/key-pool.js';
import type { Cancel } from '../upstream/cancel.js';
import { classifyResponse, isRetryable, type UpstreamOutcome } from '../upstream/classify-outcome.js';
import { sanitizeErrorBody } from '../upstream/sanitize-error.js';
import { backoff, type RetryPolicy } from '../upstream/send-with-retry.js';
import { EarlyFrames } from './early-frames.js';

export interface UpstreamTarget {
  /** `https://api.openai.com` (dialled as `wss:`) or `http://…` (dialled as `ws:`). */
  readonly origin: string;
  readonly basePath: string;
}

export interface ConnectDeps {
  readonly pool: KeyPool;
  readonly retry: RetryPolicy;
  readonly target: UpstreamTarget;
  readonly maxPayload: number;
  readonly onAttempt: (outcome: UpstreamOutcome) => void;
}

export interface ConnectRequest {
  readonly query: string;
  readonly protocols: readonly string[];
  /** Headers besides Authorization (`OpenAI-Beta`). */
  readonly headers: Readonly<Record<string, string>>;
  /** Aborted when the client leaves while the handshake runs. */
  readonly cancel: Cancel;
}

export type ConnectResult =
  | {
      readonly kind: 'open';
      readonly socket: WebSocket;
      readonly key: PoolKey;
      readonly attempts: number;
      /** Frames received before the session takes the socket over (it is paused meanwhile). */
      readonly early: EarlyFrames;
    }
  /** Upstream's own answer for the client (its error body, sanitised). */
  | { readonly kind: 'answer'; readonly status: number; readonly body: Buffer; readonly attempts: number }
  | { readonly kind: 'error'; readonly error: GatewayError; readonly attempts: number }
  | { readonly kind: 'aborted'; readonly attempts: number };

type Attempt =
  | { readonly kind: 'open'; readonly socket: WebSocket; readonly early: EarlyFrames }
  | {
      readonly kind: 'http';
      readonly status: number;
      readonly retryAfter: string | undefined;
      readonly body: Buffer;
    }
  | { readonly kind: 'network'; readonly reason: string; readonly timeout: boolean };

const MAX_ERROR_BODY = 64 * 1024;
const NONE_TRIED: ReadonlySet<number> = new Set();

export function upstreamUrl(target: UpstreamTarget, query: string): string {
  const origin = target.origin.replace(/^http/i, 'ws');
  return `${origin}${target.basePath}/v1/realtime${query === '' ? '' : `?${query}`}`;
}

export async function connectUpstream(deps: ConnectDeps, req: ConnectRequest): Promise<ConnectResult> {
  const url = upstreamUrl(deps.target, req.query);
  const { pool, retry, onAttempt } = deps;
  let tried: Set<number> | undefined;
  const deadline = Date.now() + retry.deadlineMs;
  let attempts = 0;
  let last: ConnectResult | undefined;
  while (attempts < retry.maxAttempts) {
    const key = pool.pick(tried ?? NONE_TRIED);
    if (key === undefined) break;
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      last = { kind: 'error', error: new GatewayError('upstream_timeout'), attempts };
      break;
    }
    attempts++;
    const headers = { ...req.headers, Authorization: `Bearer ${key.secret}` };
    const timeout = Math.min(retry.attemptTimeoutMs, remaining);
    const a = await attempt(url, req.protocols, headers, timeout, deps.maxPayload, req.cancel);
    if (req.cancel.aborted) {
      if (a.kind === 'open') a.socket.terminate();
      return { kind: 'aborted', attempts };
    }
    let outcome: UpstreamOutcome;
    if (a.kind === 'open') {
      pool.report(key, { kind: 'ok' });
      onAttempt({ kind: 'ok' });
      return { kind: 'open', socket: a.socket, key, attempts, early: a.early };
    } else if (a.kind === 'network') {
      outcome = { kind: 'transient', reason: a.reason };
      pool.report(key, outcome, a.reason);
      const name = a.timeout ? 'upstream_timeout' : 'upstream_unreachable';
      last = { kind: 'error', error: new GatewayError(name), attempts };
    } else {
      // Anything but 101 is a failed handshake, even a 2xx/3xx (then upstream is no realtime server).
      outcome =
        a.status < 400
          ? { kind: 'transient', reason: `upstream answered ${a.status} to the upgrade` }
          : classifyResponse(a.status, a.retryAfter, a.body, Date.now());
      pool.report(key, outcome, `${a.status} ${outcome.kind}`);
      last = finalAnswer(a.status, a.body, outcome, attempts);
    }
    onAttempt(outcome);
    if (!isRetryable(outcome)) return last;
    (tried ??= new Set()).add(key.id);
    if (attempts < retry.maxAttempts) await backoff(attempts, deadline, req.cancel);
    if (req.cancel.aborted) return { kind: 'aborted', attempts };
  }
  return last ?? { kind: 'error', error: new GatewayError('no_upstream_key'), attempts };
}

/** What the client gets when this was the last attempt (as for HTTP: a key fault is ours, 503). */
function finalAnswer(
  status: number,
  body: Buffer,
  outcome: UpstreamOutcome,
  attempts: number,
): ConnectResult {
  if (outcome.kind === 'key-invalid' || outcome.kind === 'key-quota') {
    const error = new GatewayError('no_upstream_key', 'No working upstream API key is available right now.');
    return { kind: 'error', error, attempts };
  }
  if (status < 400) return { kind: 'error', error: new GatewayError('upstream_unreachable'), attempts };
  return { kind: 'answer', status, body: sanitizeErrorBody(status, body), attempts };
}

/** One handshake with one key. */
function attempt(
  url: string,
  protocols: readonly string[],
  headers: Record<string, string>,
  timeoutMs: number,
  maxPayload: number,
  cancel: Cancel,
): Promise<Attempt> {
  return new Promise((resolve) => {
    let done = false;
    const socket = new (ws().WebSocket)(url, [...protocols], {
      headers,
      handshakeTimeout: timeoutMs,
      // Frames are mostly base64 audio and JSON relayed as they are: compressing costs CPU twice.
      perMessageDeflate: false,
      maxPayload,
      followRedirects: false,
    });
    const finish = (a: Attempt): void => {
      if (done) return;
      done = true;
      cancel.onAbort(undefined);
      resolve(a);
    };
    const onError = (err: Error): void =>
      finish({ kind: 'network', reason: err.message, timeout: /timed out/i.test(err.message) });
    socket.on('error', onError);
    socket.once('unexpected-response', (request, response: IncomingMessage) => {
      const retryAfter = response.headers['retry-after'];
      void readCapped(response, MAX_ERROR_BODY).then((body) => {
        finish({ kind: 'http', status: response.statusCode ?? 502, retryAfter, body });
        request.destroy();
      });
    });
    socket.once('open', () => {
      // Nothing is read until the session takes over; what arrived meanwhile is kept in order.
      socket.pause();
      const early = new EarlyFrames(socket);
      socket.off('error', onError);
      finish({ kind: 'open', socket, early });
    });
    cancel.onAbort(() => {
      socket.terminate();
      finish({ kind: 'network', reason: 'client gone', timeout: false });
    });
  });
}

/** Reads an error body, keeping at most `cap` bytes; a broken body still classifies by status. */
function readCapped(res: IncomingMessage, cap: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (): void => resolve(Buffer.concat(chunks, size));
    res.on('data', (chunk: Buffer) => {
      if (size >= cap) return;
      const part = chunk.subarray(0, cap - size);
      chunks.push(part);
      size += part.length;
      if (size >= cap) {
        res.destroy();
        done();
      }
    });
    res.on('end', done);
    res.on('error', done);
    res.on('close', done);
  });
}
