/**
 * THE request path of the gateway, top to bottom:
 *
 *   authenticate → read body → parse → admit (IP, model, balance, HardLimit, reserve, RPM)
 *   → send upstream with retry on other keys → stream back → settle the exact cost
 *
 * Each step is a small function in its own file; this one only sequences them and guarantees the
 * ticket is settled exactly once on every exit path (success, upstream failure, client gone).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Account } from '../accounts/account.js';
import type { Meter, RequestEnd, Ticket } from '../billing/meter.js';
import { sendError } from '../errors/catalogue.js';
import type { KeyPool } from '../keys/key-pool.js';
import type { Metrics } from '../observability/metrics.js';
import type { UpstreamClient } from '../upstream/upstream-client.js';
import { Cancel } from '../upstream/cancel.js';
import { sendWithRetry, type RetryPolicy } from '../upstream/send-with-retry.js';
import { clientHeaders } from '../upstream/forward-headers.js';
import { readBody } from '../http/read-body.js';
import { parseRequest } from './parse-request.js';
import { relayResponse } from './relay-response.js';

export interface ProxyDeps {
  readonly pool: KeyPool;
  readonly upstream: UpstreamClient;
  readonly meter: Meter;
  readonly metrics: Metrics;
  readonly retry: RetryPolicy;
  readonly maxBodyBytes: number;
  readonly maxUploadBytes: number;
}

export interface ProxyCall {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly account: Account;
  /** Path and query as received, e.g. `/v1/chat/completions?x=1`. */
  readonly url: string;
  readonly pathname: string;
  readonly ip: string;
  readonly requestId: string;
}

export async function proxyRequest(deps: ProxyDeps, call: ProxyCall): Promise<void> {
  const { req, res, requestId } = call;
  const started = performance.now();
  const multipart = (req.headers['content-type'] ?? '').toLowerCase().startsWith('multipart/');
  const read = await readBody(req, res, multipart ? deps.maxUploadBytes : deps.maxBodyBytes);
  if (!read.ok) {
    if (!read.answered) sendError(res, read.error);
    return;
  }
  const parsed = parseRequest(call.pathname, req.headers, read.body);
  if (!parsed.ok) return sendError(res, parsed.error);

  const admission = deps.meter.admit(call.account, call.pathname, parsed.req, call.ip, requestId);
  if (!admission.ok) return sendError(res, admission.error);
  const ticket = admission.ticket;
  // Rate-limit headers and the request id go on every answer from here on.
  const headers = admission.headers;
  headers['x-request-id'] = requestId;

  // A client that leaves cancels whatever upstream attempt is running.
  const cancel = new Cancel();
  const onClose = (): void => {
    if (!res.writableFinished) cancel.abort();
  };
  res.on('close', onClose);
  try {
    const sent = await sendWithRetry(
      deps.pool,
      deps.upstream,
      deps.retry,
      {
        method: req.method ?? 'GET',
        path: call.url,
        clientHeaders: req.headers,
        body: parsed.req.body,
        cancel,
      },
      (outcome) => deps.metrics.countAttempt(outcome.kind),
    );
    settleAfter(deps, ticket, await deliver(res, sent, parsed.req.stripUsageChunk, headers), started);
  } catch (err: unknown) {
    deps.meter.settle(ticket, { kind: 'failed', status: 500, outcome: 'upstream-error', attempts: 0 });
    throw err;
  } finally {
    res.off('close', onClose);
  }
}

/** Sends the final answer to the client and says how the request ended. */
async function deliver(
  res: ServerResponse,
  sent: Awaited<ReturnType<typeof sendWithRetry>>,
  stripUsageChunk: boolean,
  headers: Record<string, string>,
): Promise<RequestEnd> {
  switch (sent.kind) {
    case 'stream': {
      const r = await relayResponse(res, sent.response, { stripUsageChunk, headers });
      return {
        kind: 'relayed',
        status: sent.response.statusCode,
        end: r.end,
        usage: r.usage,
        deliveredText: r.deliveredText,
        attempts: sent.attempts,
      };
    }
    case 'buffered': {
      const out = clientHeaders(sent.headers, headers);
      out['content-type'] = 'application/json; charset=utf-8';
      out['content-length'] = String(sent.body.length);
      res.writeHead(sent.status, out);
      res.end(sent.body);
      return { kind: 'failed', status: sent.status, outcome: 'upstream-error', attempts: sent.attempts };
    }
    case 'error':
      sendError(res, sent.error, headers);
      return {
        kind: 'failed',
        status: sent.error.status,
        outcome: 'upstream-error',
        attempts: sent.attempts,
      };
    case 'aborted':
      res.destroy();
      return { kind: 'failed', status: 499, outcome: 'client-gone', attempts: sent.attempts };
  }
}

function settleAfter(deps: ProxyDeps, ticket: Ticket, end: RequestEnd, started: number): void {
  const cost = deps.meter.settle(ticket, end);
  if (cost > 0) deps.metrics.countCharged(cost);
  const kind = end.kind === 'relayed' ? end.end : end.outcome;
  deps.metrics.countRequest(kind, end.status);
  deps.metrics.duration.observe({ kind }, (performance.now() - started) / 1000);
}
