/**
 * THE request path of the gateway, top to bottom:
 *
 *   endpoint policy (which route, may this key use it) → read body → parse
 *   → ownership (every object named must be the caller's; they pin the pool key)
 *   → admit (IP, model, balance, HardLimit, reserve, RPM)
 *   → [list: answered from the gateway's records] [batch: reserve the input file's worst case]
 *   → send upstream with retry on other (allowed) keys → stream back, all but its end
 *   → record the objects created or deleted → settle the exact cost, or hand work billed when
 *     done (a batch, a background response) to the follower
 *   → once the settlement is journaled, release the end of the answer
 *
 * Each step is a small function in its own file; this one only sequences them and guarantees the
 * ticket is settled (or adopted by the follower) exactly once on every exit path.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Account } from '../accounts/account.js';
import type { Meter, Refusal, RequestEnd, Ticket } from '../billing/meter.js';
import { GatewayError, sendError } from '../errors/catalogue.js';
import type { KeyPool } from '../keys/key-pool.js';
import type { Metrics } from '../observability/metrics.js';
import type { UpstreamClient } from '../upstream/upstream-client.js';
import { Cancel } from '../upstream/cancel.js';
import { sendWithRetry, type RetryPolicy, type SendResult } from '../upstream/send-with-retry.js';
import { clientHeaders } from '../upstream/forward-headers.js';
import { readBody } from '../http/read-body.js';
import { resolveScope, type Scope } from '../tenancy/object-scope.js';
import { serveList } from '../tenancy/serve-list.js';
import {
  afterAnswer,
  NO_PLAN,
  planAnswer,
  recordOnSight,
  reserveBatch,
  type AnswerPlan,
  type TenancyDeps,
  type Work,
} from '../tenancy/tenancy.js';
import { parseRequest, type ParsedRequest } from './parse-request.js';
import { relayHeld, relayResponse, type Relayed, type RelayResult } from './relay-response.js';

export interface ProxyDeps {
  readonly pool: KeyPool;
  readonly upstream: UpstreamClient;
  readonly meter: Meter;
  readonly metrics: Metrics;
  readonly retry: RetryPolicy;
  readonly maxBodyBytes: number;
  readonly maxUploadBytes: number;
  readonly tenancy: TenancyDeps;
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

const UNSCOPED: Scope = { ok: true, affinity: undefined, pathObjects: [] };

export async function proxyRequest(deps: ProxyDeps, call: ProxyCall): Promise<void> {
  const { req, res, requestId, account } = call;
  const started = performance.now();
  const endpoint = deps.tenancy.endpoints.decide(req.method ?? 'GET', call.pathname, account);
  if (!endpoint.ok) return refuse(deps, call, endpoint.error, started);
  const classified = endpoint.classified;
  const action = classified?.route.action;
  if (action?.kind === 'websocket') return refuse(deps, call, new GatewayError('upgrade_required'), started);

  const multipart = (req.headers['content-type'] ?? '').toLowerCase().startsWith('multipart/');
  const read = await readBody(req, res, multipart ? deps.maxUploadBytes : deps.maxBodyBytes);
  if (!read.ok) {
    if (!read.answered) sendError(res, read.error);
    return deps.meter.logRefusal(account, refusal(call, read.error, started, undefined));
  }
  const parsed = parseRequest(call.pathname, req.headers, read.body);
  if (!parsed.ok) return refuse(deps, call, parsed.error, started);

  // Tenancy: every object the request names must be the caller's; together they pin the key.
  let scope =
    classified === undefined
      ? UNSCOPED
      : resolveScope(deps.tenancy.registry, account, classified, parsed.req);
  if (scope instanceof Promise) scope = await scope;
  if (!scope.ok) return refuse(deps, call, scope.error, started, parsed.req);

  // Free routes (reads, object management) pass the same gates but are never priced.
  const metered = classified === undefined || classified.route.policy === 'metered';
  let admission = deps.meter.admit(account, call.pathname, parsed.req, call.ip, requestId, metered);
  // Only several instances wait here (more credit, the cluster's rate limiter).
  if (admission instanceof Promise) admission = await admission;
  if (!admission.ok) return refuse(deps, call, admission.error, started, parsed.req);
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
  let work: Work | undefined;
  try {
    if (action?.kind === 'list') {
      const query = new URL(call.url, 'http://gateway').searchParams;
      const body = await serveList(deps.tenancy.list, account, action, query, req.headers, cancel);
      res.writeHead(200, { ...headers, 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
      return settleAfter(deps, ticket, LISTED, started, undefined);
    }
    if (action?.kind === 'batch') {
      const reserved = await reserveBatch(deps.tenancy, account, requestId, parsed.req, cancel);
      if (!reserved.ok) {
        sendError(res, reserved.error, headers);
        return settleAfter(deps, ticket, refused(reserved.error), started, undefined);
      }
      work = reserved.work;
    }
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
        affinity: scope.affinity,
        tenant: account.id,
      },
      (outcome) => deps.metrics.countAttempt(outcome.kind),
    );
    // Objects the answer created or deleted are recorded as soon as it is in. Work billed later
    // (a batch, a background response) is recorded durably before the client even sees its id.
    const plan =
      classified === undefined
        ? NO_PLAN
        : planAnswer(deps.tenancy, account, classified, scope, parsed.req, work);
    let adopted = false;
    const record =
      plan.record && classified !== undefined && sent.kind === 'stream'
        ? async (r: RelayResult): Promise<void> => {
            const answer = {
              status: sent.response.statusCode,
              key: sent.key,
              createdId: r.createdId,
              body: r.body,
            };
            const usageSeen = r.usage !== undefined;
            const c = { account, classified, scope, req: parsed.req, ticket, work, answer, usageSeen };
            work = undefined; // afterAnswer adopts or releases it
            adopted = await afterAnswer(deps.tenancy, c);
          }
        : undefined;
    // Several instances: a streamed object is published as soon as its id goes by.
    const onId =
      classified === undefined || sent.kind !== 'stream'
        ? undefined
        : recordOnSight(deps.tenancy, { account, classified, scope, req: parsed.req }, plan, {
            status: sent.response.statusCode,
            key: sent.key,
          });
    const delivered = await deliver(res, sent, {
      stripUsageChunk: parsed.req.stripUsageChunk,
      headers,
      plan,
      record,
      onId,
    });
    if (!adopted) settleAfter(deps, ticket, delivered.end, started, delivered.firstByteAt);
    // The end of the answer leaves once its settlement is in the journal: a client that holds a
    // complete answer has been billed for it, even if the process dies the next instant.
    await deps.meter.durable();
    delivered.release();
  } catch (err: unknown) {
    deps.meter.settle(ticket, { kind: 'failed', status: 500, outcome: 'upstream-error', attempts: 0 });
    throw err;
  } finally {
    // A batch reservation no answer adopted (upstream refused or failed) is released here.
    if (work !== undefined) deps.meter.settle(work.ticket, refused(new GatewayError('upstream_unreachable')));
    res.off('close', onClose);
  }
}

const NOTHING = (): Promise<void> => Promise.resolve();
const NO_END = (): void => undefined;

const LISTED: RequestEnd = { kind: 'done', status: 200, outcome: 'completed', parts: [], attempts: 0 };

function refused(error: GatewayError): RequestEnd {
  const errorCode = error.code ?? error.errorName;
  return { kind: 'failed', status: error.status, outcome: 'refused', attempts: 0, errorCode };
}

/** Answers an error of the gateway's own before admission, and puts it in the request log. */
function refuse(
  deps: ProxyDeps,
  call: ProxyCall,
  error: GatewayError,
  started: number,
  req?: ParsedRequest,
): void {
  // The id names the refusal's row in the request log.
  sendError(call.res, error, { 'x-request-id': call.requestId });
  deps.meter.logRefusal(call.account, refusal(call, error, started, req));
}

function refusal(
  call: ProxyCall,
  error: GatewayError,
  started: number,
  req: ParsedRequest | undefined,
): Refusal {
  return {
    requestId: call.requestId,
    path: call.pathname,
    model: req?.model ?? '',
    stream: req?.stream ?? false,
    clientIp: call.ip,
    error,
    latencyMs: performance.now() - started,
  };
}

/**
 * Sends the answer to the client, all but the end of a complete one (`release` sends it), and
 * says how the request ended.
 */
async function deliver(
  res: ServerResponse,
  sent: SendResult,
  opts: {
    stripUsageChunk: boolean;
    headers: Record<string, string>;
    plan: AnswerPlan;
    /** Records what the answer did to the caller's objects (absent when it does nothing). */
    record: ((r: RelayResult) => Promise<void>) | undefined;
    /** Called when a streamed answer's created id goes by (several instances). */
    onId: ((id: string) => void) | undefined;
  },
): Promise<{ end: RequestEnd; release: () => void; firstByteAt?: number | undefined }> {
  const { headers, plan, record } = opts;
  switch (sent.kind) {
    case 'stream': {
      let r: Relayed;
      if (plan.hold) {
        r = await relayHeld(res, sent.response, {
          headers,
          scanId: plan.scanId,
          beforeSend: record ?? NOTHING,
          rewrite: plan.rewrite,
        });
      } else {
        r = await relayResponse(res, sent.response, {
          stripUsageChunk: opts.stripUsageChunk,
          headers,
          scanId: plan.scanId,
          onId: opts.onId,
        });
        if (record !== undefined && r.refused === undefined) await record(r);
      }
      // Refused before anything left (not JSON): nothing delivered, nothing charged.
      if (r.refused !== undefined) {
        const end = {
          kind: 'failed',
          status: r.refused.status,
          outcome: 'upstream-error',
          attempts: sent.attempts,
        } as const;
        return { end, release: r.release, firstByteAt: r.firstByteAt };
      }
      return {
        end: {
          kind: 'relayed',
          status: sent.response.statusCode,
          end: r.end,
          usage: r.usage,
          deliveredText: r.deliveredText,
          attempts: sent.attempts,
        },
        release: r.release,
        firstByteAt: r.firstByteAt,
      };
    }
    case 'buffered': {
      const out = clientHeaders(sent.headers, headers);
      out['content-type'] = 'application/json; charset=utf-8';
      out['content-length'] = String(sent.body.length);
      res.writeHead(sent.status, out);
      res.end(sent.body);
      return {
        end: { kind: 'failed', status: sent.status, outcome: 'upstream-error', attempts: sent.attempts },
        release: NO_END,
      };
    }
    case 'error':
      sendError(res, sent.error, headers);
      return {
        end: {
          kind: 'failed',
          status: sent.error.status,
          outcome: 'upstream-error',
          attempts: sent.attempts,
        },
        release: NO_END,
      };
    case 'aborted':
      res.destroy();
      return {
        end: { kind: 'failed', status: 499, outcome: 'client-gone', attempts: sent.attempts },
        release: NO_END,
      };
  }
}

function settleAfter(
  deps: ProxyDeps,
  ticket: Ticket,
  end: RequestEnd,
  started: number,
  firstByteAt: number | undefined,
): void {
  const now = performance.now();
  const timing = {
    latencyMs: now - started,
    ttfbMs: firstByteAt === undefined ? null : firstByteAt - started,
  };
  const cost = deps.meter.settle(ticket, end, timing);
  if (cost > 0) deps.metrics.countCharged(cost);
  const kind = end.kind === 'relayed' ? end.end : end.outcome;
  deps.metrics.countRequest(kind, end.status);
  deps.metrics.observeDuration(kind, (now - started) / 1000);
}
