/**
 * Sends one client request upstream, moving to a different pool key after a connection error,
 * 5xx, 429 or key fault, up to MAX_ATTEMPTS within one overall deadline. Nothing has been sent to
 * the client while this runs, so a retry is always invisible; the caller commits the response.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';
import type { KeyAffinity, KeyPool, PoolKey } from '../keys/key-pool.js';
import type { Cancel } from './cancel.js';
import { classifyResponse, isRetryable, type UpstreamOutcome } from './classify-outcome.js';
import { upstreamHeaders } from './forward-headers.js';
import { sanitizeErrorBody } from './sanitize-error.js';
import type { UpstreamBody } from './upstream-body.js';
import type { UpstreamClient, UpstreamHeaders, UpstreamResponse } from './upstream-client.js';

export interface RetryPolicy {
  readonly maxAttempts: number;
  readonly deadlineMs: number;
  readonly attemptTimeoutMs: number;
  /** Told of every attempt (metrics by pool key); absent in tests that build a policy by hand. */
  readonly observe?: AttemptObserver | undefined;
}

/** One attempt: the key that made it (id and last4 only), its outcome, ms until upstream answered. */
export type AttemptObserver = (
  key: Pick<PoolKey, 'id' | 'last4'>,
  outcome: UpstreamOutcome,
  ms: number,
) => void;

export interface OutboundRequest {
  readonly method: string;
  readonly path: string;
  readonly clientHeaders: IncomingHttpHeaders;
  readonly body: Buffer | undefined;
  readonly cancel: Cancel;
  /** Only keys that hold the objects the request names (tenancy); any key when undefined. */
  readonly affinity?: KeyAffinity | undefined;
  /** The caller's account, to keep its `Idempotency-Key` apart from other tenants'. */
  readonly tenant?: number | undefined;
}

export type SendResult =
  /** A response to stream to the client (success or the client's own error). */
  | {
      readonly kind: 'stream';
      readonly key: PoolKey;
      readonly response: UpstreamResponse;
      readonly attempts: number;
    }
  /** A final upstream error, already read and sanitised. */
  | {
      readonly kind: 'buffered';
      readonly status: number;
      readonly headers: UpstreamHeaders;
      readonly body: Buffer;
      readonly attempts: number;
    }
  | { readonly kind: 'error'; readonly error: GatewayError; readonly attempts: number }
  | { readonly kind: 'aborted'; readonly attempts: number };

const MAX_ERROR_BODY = 64 * 1024;
const NONE_TRIED: ReadonlySet<number> = new Set();

export async function sendWithRetry(
  pool: KeyPool,
  client: UpstreamClient,
  policy: RetryPolicy,
  req: OutboundRequest,
  onAttempt: (outcome: UpstreamOutcome) => void,
): Promise<SendResult> {
  // Ids of the keys tried so far; almost every request needs one attempt, so no Set up front.
  let tried: Set<number> | undefined;
  const deadline = Date.now() + policy.deadlineMs;
  let last: SendResult | undefined;
  let attempts = 0;
  const cancel = req.cancel;
  while (attempts < policy.maxAttempts) {
    const key =
      req.affinity === undefined
        ? pool.pick(tried ?? NONE_TRIED)
        : pool.pickPinned(req.affinity, tried ?? NONE_TRIED);
    if (key === undefined) {
      if (attempts === 0 && req.affinity !== undefined) {
        // The objects' organisation cannot be reached: say so, rather than 404 from another one.
        const name = pool.anyAllows(req.affinity) ? 'object_unavailable' : 'objects_apart';
        return { kind: 'error', error: new GatewayError(name), attempts };
      }
      break;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      last = { kind: 'error', error: new GatewayError('upstream_timeout'), attempts };
      break;
    }
    attempts++;
    const sentAt = performance.now();
    const result = await client.send({
      method: req.method,
      path: req.path,
      headers: upstreamHeaders(req.clientHeaders, key.secret, req.body?.length ?? 0, req.tenant),
      body: req.body,
      cancel,
      headersTimeoutMs: Math.min(policy.attemptTimeoutMs, remaining),
    });
    if (cancel.aborted) {
      if (result.kind === 'response') result.response.body.destroy();
      return { kind: 'aborted', attempts };
    }
    if (result.kind === 'network-error') {
      const outcome: UpstreamOutcome = { kind: 'transient', reason: result.reason };
      pool.report(key, outcome, result.reason);
      onAttempt(outcome);
      policy.observe?.(key, outcome, performance.now() - sentAt);
      last = {
        kind: 'error',
        error: new GatewayError(result.timeout ? 'upstream_timeout' : 'upstream_unreachable'),
        attempts,
      };
    } else {
      const { statusCode, headers } = result.response;
      const answeredMs = performance.now() - sentAt;
      if (statusCode < 400) {
        pool.report(key, { kind: 'ok' });
        onAttempt({ kind: 'ok' });
        policy.observe?.(key, { kind: 'ok' }, answeredMs);
        return { kind: 'stream', key, response: result.response, attempts };
      }
      const raw = await readCapped(result.response.body, MAX_ERROR_BODY);
      const retryAfter = typeof headers['retry-after'] === 'string' ? headers['retry-after'] : undefined;
      const outcome = classifyResponse(statusCode, retryAfter, raw, Date.now());
      pool.report(key, outcome, `${statusCode} ${outcome.kind === 'ok' ? '' : outcome.kind}`.trim());
      onAttempt(outcome);
      policy.observe?.(key, outcome, answeredMs);
      last = finalError(statusCode, headers, raw, outcome, attempts);
      if (!isRetryable(outcome)) return last;
    }
    // Only a failed attempt gets here: the next one must use another key.
    (tried ??= new Set()).add(key.id);
    if (attempts < policy.maxAttempts) await backoff(attempts, deadline, cancel);
    if (cancel.aborted) return { kind: 'aborted', attempts };
  }
  return last ?? { kind: 'error', error: new GatewayError('no_upstream_key'), attempts };
}

/**
 * What the client sees when this was the last attempt. A pool key's own fault (invalid, out of
 * quota) is the gateway's problem, not the client's, so it becomes 503 rather than a misleading 401.
 */
function finalError(
  status: number,
  headers: UpstreamHeaders,
  raw: Buffer,
  outcome: UpstreamOutcome,
  attempts: number,
): SendResult {
  if (outcome.kind === 'key-invalid' || outcome.kind === 'key-quota') {
    return {
      kind: 'error',
      error: new GatewayError('no_upstream_key', 'No working upstream API key is available right now.'),
      attempts,
    };
  }
  return { kind: 'buffered', status, headers, body: sanitizeErrorBody(status, raw), attempts };
}

/** Reads a body, keeping at most `cap` bytes; a broken body yields what arrived. */
export function readCapped(body: UpstreamBody, cap: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (): void => resolve(Buffer.concat(chunks, size));
    body.attach({
      onData(chunk) {
        if (size + chunk.length > cap) {
          chunks.push(chunk.subarray(0, cap - size));
          size = cap;
          body.destroy();
          done();
          return;
        }
        chunks.push(chunk);
        size += chunk.length;
      },
      onEnd: done,
      onError: done,
    });
  });
}

/** Short jittered pause between attempts so a burst of retries does not hammer the next key. */
export function backoff(attempt: number, deadline: number, cancel: Cancel): Promise<void> {
  const ms = Math.min(Math.max(0, deadline - Date.now()), 5 + Math.random() * 20 * attempt);
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      cancel.onAbort(undefined);
      resolve();
    }
    cancel.onAbort(done);
  });
}
