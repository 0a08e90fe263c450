/**
 * The HTTP front: one node:http server and a flat route table. Routing is a few string prefix
 * checks (no router library): the hot /v1 path must cost as little as possible. Every thrown
 * GatewayError becomes an OpenAI-shaped error; anything else is logged and answered as 500.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Authenticator } from '../accounts/authenticate.js';
import { handleKeys } from '../admin/keys-routes.js';
import { handleUsers, type UsersDeps } from '../admin/users-routes.js';
import { handleDashboard } from '../dashboard/dashboard-routes.js';
import { handleLogs } from '../logs/log-routes.js';
import { GatewayError, sendError } from '../errors/catalogue.js';
import type { KeyPool } from '../keys/key-pool.js';
import { metricsRefusal, type Metrics } from '../observability/metrics.js';
import { OPENAPI_PATH, serveOpenApi } from '../openapi/openapi-route.js';
import { proxyRequest, type ProxyDeps } from '../proxy/pipeline.js';
import type { ClientAddress } from './client-address.js';
import type { Cors } from './cors.js';
import { sendJson } from './send-json.js';
import type { StaticFiles } from './static-files.js';

export interface ServerDeps {
  readonly log: Logger;
  /** Request headers must arrive within this (HEADERS_TIMEOUT_MS): slowloris senders are closed. */
  readonly headersTimeoutMs: number;
  readonly metrics: Metrics;
  /** METRICS_TOKEN: when set, GET /metrics requires it as a Bearer token. */
  readonly metricsToken?: string | undefined;
  readonly auth: Authenticator;
  readonly pool: KeyPool;
  readonly proxy: ProxyDeps;
  readonly users: UsersDeps;
  readonly cors: Cors;
  readonly clientAddress: ClientAddress;
  readonly pages: StaticFiles | undefined;
  readonly ready: () => Promise<{
    ok: boolean;
    checks: Record<string, boolean>;
    /** This instance's id among several (its row in `instances`, its leases). */
    instance?: string;
    /** Why it is not ready, in words (absent when ready). */
    reasons?: readonly string[];
  }>;
  readonly isDraining: () => boolean;
}

export function createHttpServer(deps: ServerDeps): Server {
  const server = createServer(
    {
      keepAliveTimeout: 65_000,
      requestTimeout: 0,
      headersTimeout: deps.headersTimeoutMs,
      // Node enforces headersTimeout when it checks its connections: often enough to keep the bound.
      connectionsCheckingInterval: Math.min(30_000, Math.max(250, Math.floor(deps.headersTimeoutMs / 4))),
    },
    (req, res) => {
      handle(deps, req, res).catch((err: unknown) => onError(deps, res, err));
    },
  );
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // Headers too slow (slowloris) or malformed: answer, then close for good. A half-close
    // would keep the socket as long as a peer that never reads keeps sending.
    if (!socket.writable) return void socket.destroy(err);
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`, () =>
      socket.destroy(),
    );
  });
  return server;
}

async function handle(deps: ServerDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const pathname = q < 0 ? url : url.slice(0, q);
  if (req.headers.origin !== undefined && deps.cors.apply(req, res)) return;
  if (deps.isDraining()) res.setHeader('connection', 'close');

  if (pathname.startsWith('/v1/')) {
    if (pathname.startsWith('/v1/dashboard/')) return dashboard(deps, req, res, pathname.slice(3), url);
    const requestId = nextRequestId();
    const answer = deps.auth.authenticate(req.headers);
    // An account in memory answers synchronously: no extra turn of the event loop per request.
    const auth = answer instanceof Promise ? await answer : answer;
    if (!auth.ok) return sendError(res, auth.error);
    await proxyRequest(deps.proxy, {
      req,
      res,
      account: auth.account,
      url,
      pathname,
      ip: deps.clientAddress.of(req),
      requestId,
    });
    return;
  }
  if (pathname === '/x-keys' || pathname.startsWith('/x-keys/')) {
    const auth = await deps.auth.authenticate(req.headers);
    if (!auth.ok) return sendError(res, auth.error);
    if (!auth.account.isRoot) throw new GatewayError('root_only');
    return handleKeys(deps.pool, req, res, pathname.slice('/x-keys/'.length), (ms) =>
      deps.users.calendar.iso(ms),
    );
  }
  for (const kind of ['x-users', 'x-dna'] as const) {
    if (pathname === `/${kind}` || pathname.startsWith(`/${kind}/`)) {
      const auth = await deps.auth.authenticate(req.headers);
      if (!auth.ok) return sendError(res, auth.error);
      return handleUsers(
        deps.users,
        auth.account,
        req,
        res,
        kind,
        decodeIdent(pathname.slice(kind.length + 2)),
        url,
      );
    }
  }
  if (pathname === '/x-logs') {
    const auth = await deps.auth.authenticate(req.headers);
    if (!auth.ok) return sendError(res, auth.error);
    return handleLogs(deps.users, auth.account, req, res, url);
  }
  if (pathname.startsWith('/dashboard/')) return dashboard(deps, req, res, pathname, url);
  if (pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
  if (pathname === '/readyz') {
    const r = await deps.ready();
    return sendJson(res, r.ok && !deps.isDraining() ? 200 : 503, {
      status: r.ok ? 'ready' : 'not ready',
      ...(r.instance !== undefined && { instance: r.instance }),
      ...r.checks,
      ...(r.reasons !== undefined && r.reasons.length > 0 && { reasons: r.reasons }),
    });
  }
  if (pathname === '/metrics' && req.method === 'GET') {
    const refused = metricsRefusal(deps.metricsToken, req.headers.authorization);
    if (refused !== undefined) return sendError(res, refused);
    const body = await deps.metrics.registry.metrics();
    res.writeHead(200, { 'content-type': deps.metrics.registry.contentType });
    res.end(body);
    return;
  }
  if (pathname === OPENAPI_PATH && (req.method === 'GET' || req.method === 'HEAD')) return serveOpenApi(res);
  if (deps.pages !== undefined && (req.method === 'GET' || req.method === 'HEAD')) {
    if (pathname === '/') {
      res.writeHead(302, { location: '/docs/', 'content-length': '0' });
      res.end();
      return;
    }
    if (await deps.pages.handle(req, res, pathname)) return;
  }
  throw new GatewayError('not_found', `Unknown route: ${req.method ?? 'GET'} ${pathname.slice(0, 200)}`);
}

async function dashboard(
  deps: ServerDeps,
  req: IncomingMessage,
  res: ServerResponse,
  pathname: string,
  url: string,
): Promise<void> {
  const auth = await deps.auth.authenticate(req.headers);
  if (!auth.ok) return sendError(res, auth.error);
  return handleDashboard(deps.users, auth.account, req, res, pathname, url);
}

/**
 * Request ids that sort by time: milliseconds, a per-process random tag and a counter. They are
 * unique across processes and restarts, cost no CSPRNG call per request, and land at the end of the
 * usage_records primary key instead of at random places in it.
 */
const PROCESS_TAG = randomBytes(4).toString('hex');
let sequence = 0;
// The "req_<ms><tag>" prefix changes once per millisecond while a busy gateway asks many times.
let prefixMs = -1;
let prefix = '';
export function nextRequestId(): string {
  sequence = (sequence + 1) % 0x1000000;
  const now = Date.now();
  if (now !== prefixMs) {
    prefixMs = now;
    prefix = `req_${now.toString(36)}${PROCESS_TAG}`;
  }
  return prefix + sequence.toString(36).padStart(5, '0');
}

function decodeIdent(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new GatewayError('invalid_value', 'The account identifier in the path is not valid URL encoding.');
  }
}

function onError(deps: ServerDeps, res: ServerResponse, err: unknown): void {
  if (err instanceof GatewayError) {
    sendError(res, err);
    return;
  }
  deps.log.error({ err }, 'unhandled error while handling a request');
  sendError(res, new GatewayError('internal'));
}
