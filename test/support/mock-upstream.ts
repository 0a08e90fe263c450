// Programmable mock of the OpenAI API for the end-to-end tests: a plain node:http server on 127.0.0.1
// whose behaviour (normal OpenAI answers, canned errors, hangs, dropped streams, delays) is chosen per
// upstream key, and which records every request it receives (including client aborts) for assertions.
// Behind normal answers it models OpenAI's stateful objects (files, batches, responses, vector stores…)
// separately per upstream organisation, chosen by the request's key, so that tests can check that the
// gateway keeps tenants apart. This file is the server and the route table; the endpoints live in
// mock-inference, mock-responses, mock-files, mock-objects and mock-jobs, their state in mock-state.
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { FILE_ROUTES } from './mock-files.js';
import {
  errorBody,
  errorReply,
  headerValue,
  isJson,
  jsonReply,
  str,
  type HeaderMap,
  type Reply,
} from './mock-http.js';
import { INFERENCE_ROUTES } from './mock-inference.js';
import { JOB_ROUTES } from './mock-jobs.js';
import { OBJECT_ROUTES } from './mock-objects.js';
import { RESPONSE_ROUTES } from './mock-responses.js';
import {
  MockWorld,
  type AdvanceOptions,
  type AsyncWorkMode,
  type Ctx,
  type OrgObjects,
  type Route,
  type StreamOptions,
} from './mock-state.js';

export { mockEmbedding, mockSpeechBytes } from './mock-http.js';
export { MOCK_MODEL_IDS } from './mock-inference.js';
export { mockVideoBytes } from './mock-jobs.js';
export { DEFAULT_ORGANISATION } from './mock-state.js';
export type {
  AdvanceOptions,
  AsyncWorkMode,
  BatchOutcome,
  ObjectType,
  OrgObjects,
  StreamOptions,
} from './mock-state.js';

// ---------------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------------

export type Behaviour =
  | { kind: 'ok' }
  | { kind: 'status'; status: number; body?: unknown; headers?: Record<string, string> }
  | { kind: 'error500' }
  | { kind: 'error503' }
  | { kind: 'invalid-key' }
  | { kind: 'deactivated' }
  | { kind: 'rate-limited'; retryAfterSec?: number }
  | { kind: 'insufficient-quota' }
  | { kind: 'hang' }
  | { kind: 'drop-mid-stream'; afterChunks: number }
  | { kind: 'slow'; delayMs: number };

export interface RecordedRequest {
  key: string | null;
  method: string;
  /** The request target as received: path plus query string. */
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  receivedAt: number;
  aborted: boolean;
  abortedAt?: number;
}

export interface MockUpstreamOptions {
  defaultBehaviour?: Behaviour;
  stream?: Partial<StreamOptions>;
  /** Upstream key → organisation. Other keys, and requests without a key, belong to 'org-default'. */
  organisations?: Record<string, string>;
  /** When batches, background responses, fine-tuning jobs and videos finish (default 'manual'). */
  asyncWork?: AsyncWorkMode;
}

export interface MockUpstream {
  url: string;
  /** The underlying HTTP server (WebSocket mocks attach their 'upgrade' handler to it). */
  server: Server;
  setKey(key: string, b: Behaviour): void;
  setDefault(b: Behaviour): void;
  setStream(opts: Partial<StreamOptions>): void;
  /** Puts `key` in organisation `org` from the next request on (objects already created stay where they are). */
  setOrganisation(key: string, org: string): void;
  /** The organisation a request with `key` acts in. */
  organisationOf(key: string | null): string;
  /** Switches between manual work and work that finishes by itself; pending work follows the new mode. */
  setAsyncWork(mode: AsyncWorkMode): void;
  /**
   * Finishes every pending piece of work now (batches, background responses, fine-tuning jobs, videos,
   * cancellations), before returning; returns the ids of the objects whose work finished.
   */
  advance(opts?: AdvanceOptions): string[];
  /** A frozen snapshot of one organisation's objects, for assertions. */
  objects(org: string): OrgObjects;
  requests: RecordedRequest[];
  /** Forgets requests, behaviours and every organisation's objects and pending work; options apply again. */
  reset(): void;
  close(): Promise<void>;
}

export const DEFAULT_STREAM_OPTIONS: Readonly<StreamOptions> = {
  chunks: 5,
  intervalMs: 0,
  content: 'Hello from mock',
};

// ---------------------------------------------------------------------------------------------------
// Public helpers
// ---------------------------------------------------------------------------------------------------

/** Polls `predicate` every 10 ms until it returns a truthy value, which is returned. */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  timeoutMs = 5_000,
): Promise<Exclude<T, false | null | undefined | 0 | ''>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value as Exclude<T, false | null | undefined | 0 | ''>;
    if (Date.now() >= deadline) throw new Error(`waitFor: condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Masks a key the way OpenAI echoes it in `invalid_api_key` messages: first 7 chars, stars, last 4. */
export function maskKeyLikeOpenAI(key: string): string {
  if (key.length <= 11) return key;
  return `${key.slice(0, 7)}${'*'.repeat(key.length - 11)}${key.slice(-4)}`;
}

// ---------------------------------------------------------------------------------------------------
// Route table (behaviour 'ok')
// ---------------------------------------------------------------------------------------------------

const ROUTES: readonly Route[] = [
  ...INFERENCE_ROUTES,
  ...RESPONSE_ROUTES,
  ...FILE_ROUTES,
  ...OBJECT_ROUTES,
  ...JOB_ROUTES,
];

/** Other /v1 paths answer with what they received, so that tests see the gateway forward unknown APIs. */
function echoReply(ctx: Ctx): Reply {
  return jsonReply(200, {
    echo: { method: ctx.method, path: ctx.path, query: ctx.query, bodyBytes: ctx.body.length },
  });
}

async function routeOk(ctx: Ctx): Promise<Reply> {
  if (ctx.path !== '/v1' && !ctx.path.startsWith('/v1/')) {
    return errorReply(404, `Invalid URL (${ctx.method} ${ctx.path})`, 'invalid_request_error', null);
  }
  for (const route of ROUTES) {
    if (route.method !== ctx.method) continue;
    const match = route.pattern.exec(ctx.path);
    if (match) return route.handler(ctx, match.slice(1));
  }
  return echoReply(ctx);
}

// ---------------------------------------------------------------------------------------------------
// Canned failure behaviours
// ---------------------------------------------------------------------------------------------------

type CannedBehaviour = Exclude<Behaviour, { kind: 'ok' | 'hang' | 'slow' | 'drop-mid-stream' }>;

function lowerCaseHeaders(headers: HeaderMap | undefined): HeaderMap {
  return Object.fromEntries(
    Object.entries(headers ?? {}).map(([name, value]) => [name.toLowerCase(), value]),
  );
}

function statusReply(b: Extract<Behaviour, { kind: 'status' }>): Reply {
  const headers = lowerCaseHeaders(b.headers);
  const raw = (contentType: string, body: Buffer): Reply => ({
    type: 'body',
    status: b.status,
    headers: { 'content-type': contentType, ...headers },
    body,
  });
  if (b.status === 204 || b.status === 304)
    return { type: 'body', status: b.status, headers, body: Buffer.alloc(0) };
  if (typeof b.body === 'string') return raw('text/plain; charset=utf-8', Buffer.from(b.body));
  if (b.body instanceof Uint8Array) return raw('application/octet-stream', Buffer.from(b.body));
  if (b.body !== undefined) return jsonReply(b.status, b.body, headers);
  const fallback = b.status >= 400 ? errorBody(`Mock status ${b.status}`, 'mock_error', null) : {};
  return jsonReply(b.status, fallback, headers);
}

function invalidKeyReply(key: string | null): Reply {
  const message =
    key === null
      ? "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
      : `Incorrect API key provided: ${maskKeyLikeOpenAI(key)}. You can find your API key at https://platform.openai.com/account/api-keys.`;
  return errorReply(401, message, 'invalid_request_error', key === null ? null : 'invalid_api_key');
}

function requestModel(ctx: Ctx): string {
  try {
    const parsed: unknown = JSON.parse(ctx.body.toString('utf8'));
    return isJson(parsed) ? str(parsed.model, 'gpt-4o-mini') : 'gpt-4o-mini';
  } catch {
    return 'gpt-4o-mini';
  }
}

function rateLimitedReply(ctx: Ctx, retryAfterSec: number | undefined): Reply {
  const wait = retryAfterSec ?? 20;
  const headers: HeaderMap = {
    'x-ratelimit-limit-requests': '3',
    'x-ratelimit-remaining-requests': '0',
    'x-ratelimit-reset-requests': `${wait}s`,
  };
  if (retryAfterSec !== undefined) headers['retry-after'] = String(retryAfterSec);
  const message = `Rate limit reached for ${requestModel(ctx)} in organization ${ctx.org.name} on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in ${wait}s.`;
  return errorReply(429, message, 'requests', 'rate_limit_exceeded', headers);
}

function cannedReply(b: CannedBehaviour, ctx: Ctx): Reply {
  switch (b.kind) {
    case 'status':
      return statusReply(b);
    case 'error500':
      return errorReply(
        500,
        'The server had an error while processing your request. Sorry about that!',
        'server_error',
        null,
      );
    case 'error503':
      return errorReply(503, 'The server is overloaded or not ready yet.', 'server_error', null);
    case 'invalid-key':
      return invalidKeyReply(ctx.key);
    case 'deactivated':
      return errorReply(
        401,
        'The OpenAI account associated with this API key has been deactivated. If you are the developer for this OpenAI app, please check your email for more information.',
        'invalid_request_error',
        'account_deactivated',
      );
    case 'rate-limited':
      return rateLimitedReply(ctx, b.retryAfterSec);
    case 'insufficient-quota':
      return errorReply(
        429,
        'You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.',
        'insufficient_quota',
        'insufficient_quota',
      );
  }
}

// ---------------------------------------------------------------------------------------------------
// Writing replies to the socket
// ---------------------------------------------------------------------------------------------------

interface Exchange {
  res: ServerResponse;
  requestId: string;
  /** Set when the mock itself destroys the socket, so that it is not recorded as a client abort. */
  selfDestroyed: boolean;
}

/** Waits `ms`, returning early when the response closes. */
function sleep(ms: number, res: ServerResponse): Promise<void> {
  if (ms <= 0 || res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      res.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    res.once('close', done);
  });
}

function headersFor(ex: Exchange, reply: Reply): HeaderMap {
  const headers: HeaderMap = { 'x-request-id': ex.requestId, ...reply.headers };
  if (reply.type === 'body' && reply.status !== 204 && reply.status !== 304) {
    headers['content-length'] = String(reply.body.length);
  }
  return headers;
}

async function writeEvents(ex: Exchange, events: string[], intervalMs: number): Promise<boolean> {
  for (const [i, event] of events.entries()) {
    if (i > 0) await sleep(intervalMs, ex.res);
    if (ex.res.destroyed) return false;
    ex.res.write(event);
  }
  return !ex.res.destroyed;
}

async function writeReply(ex: Exchange, reply: Reply, intervalMs: number): Promise<void> {
  if (ex.res.destroyed) return;
  ex.res.writeHead(reply.status, headersFor(ex, reply));
  if (reply.type === 'body') {
    ex.res.end(reply.body);
    return;
  }
  ex.res.flushHeaders();
  if (await writeEvents(ex, reply.events, intervalMs)) ex.res.end();
}

/** Destroys the connection once everything written so far has been handed to the kernel. */
function destroyWhenFlushed(ex: Exchange): void {
  const destroy = (): void => {
    ex.selfDestroyed = true;
    ex.res.destroy();
  };
  const socket = ex.res.socket;
  if (socket === null || socket.destroyed) return destroy();
  socket.write(Buffer.alloc(0), destroy);
}

async function dropReply(ex: Exchange, reply: Reply, afterChunks: number, intervalMs: number): Promise<void> {
  if (ex.res.destroyed) return;
  ex.res.writeHead(reply.status, headersFor(ex, reply));
  ex.res.flushHeaders();
  if (reply.type === 'body') {
    ex.res.write(reply.body.subarray(0, Math.floor(reply.body.length / 2)));
  } else {
    const count = Math.min(Math.max(0, Math.floor(afterChunks)), reply.events.length - 1);
    if (!(await writeEvents(ex, reply.events.slice(0, count), intervalMs))) return;
  }
  destroyWhenFlushed(ex);
}

async function respond(b: Behaviour, ctx: Ctx, ex: Exchange): Promise<void> {
  const intervalMs = ctx.stream.intervalMs;
  switch (b.kind) {
    case 'hang':
      return;
    case 'ok':
      return writeReply(ex, await routeOk(ctx), intervalMs);
    case 'slow':
      await sleep(b.delayMs, ex.res);
      return writeReply(ex, await routeOk(ctx), intervalMs);
    case 'drop-mid-stream':
      return dropReply(ex, await routeOk(ctx), b.afterChunks, intervalMs);
    default:
      return writeReply(ex, cannedReply(b, ctx), 0);
  }
}

// ---------------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------------

function bearerKey(authorization: string | undefined): string | null {
  const match = /^Bearer\s+(\S.*)$/i.exec(authorization?.trim() ?? '');
  return match?.[1]?.trim() ?? null;
}

/** Reads the whole request body; null when the client went away before the body ended. */
function readBody(req: IncomingMessage): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', () => resolve(null));
    req.on('close', () => {
      if (!req.complete) resolve(null);
    });
  });
}

function listen(server: Server): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

export async function startMockUpstream(options: MockUpstreamOptions = {}): Promise<MockUpstream> {
  const initialDefault: Behaviour = options.defaultBehaviour ?? { kind: 'ok' };
  const initialStream: StreamOptions = { ...DEFAULT_STREAM_OPTIONS, ...options.stream };
  const requests: RecordedRequest[] = [];
  const keyBehaviours = new Map<string, Behaviour>();
  const sockets = new Set<Socket>();
  let defaultBehaviour = initialDefault;
  let stream: StreamOptions = { ...initialStream };
  const world = new MockWorld(options.organisations ?? {}, options.asyncWork ?? 'manual');
  let requestCount = 0;
  let closing = false;

  const record = (req: IncomingMessage): RecordedRequest => {
    const entry: RecordedRequest = {
      key: bearerKey(headerValue(req.headers.authorization)),
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers: req.headers,
      body: Buffer.alloc(0),
      receivedAt: Date.now(),
      aborted: false,
    };
    requests.push(entry);
    return entry;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const entry = record(req);
    requestCount += 1;
    const ex: Exchange = { res, requestId: `req_mock_${requestCount}`, selfDestroyed: false };
    res.on('close', () => {
      if (res.writableFinished || ex.selfDestroyed || closing) return;
      entry.aborted = true;
      entry.abortedAt = Date.now();
    });
    const body = await readBody(req);
    if (body === null) return;
    entry.body = body;
    const url = new URL(entry.path, 'http://mock-upstream.invalid');
    const ctx: Ctx = {
      method: entry.method,
      path: url.pathname,
      query: url.search.replace(/^\?/, ''),
      headers: req.headers,
      body,
      key: entry.key,
      stream: { ...stream },
      org: world.org(world.organisationOf(entry.key)),
      world,
    };
    const behaviour = (entry.key === null ? undefined : keyBehaviours.get(entry.key)) ?? defaultBehaviour;
    await respond(behaviour, ctx, ex);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const message = error instanceof Error ? error.message : String(error);
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify(errorBody(`mock-upstream crashed: ${message}`, 'server_error', null)));
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const address = await listen(server);
  let closed: Promise<void> | undefined;

  return {
    url: `http://127.0.0.1:${address.port}`,
    server,
    requests,
    setKey: (key, b) => void keyBehaviours.set(key, b),
    setDefault: (b) => {
      defaultBehaviour = b;
    },
    setStream: (opts) => {
      stream = { ...stream, ...opts };
    },
    setOrganisation: (key, org) => world.setOrganisation(key, org),
    organisationOf: (key) => world.organisationOf(key),
    setAsyncWork: (mode) => world.setMode(mode),
    advance: (opts) => world.advance(opts),
    objects: (org) => world.objects(org),
    reset: () => {
      requests.length = 0;
      keyBehaviours.clear();
      defaultBehaviour = initialDefault;
      stream = { ...initialStream };
      world.reset();
    },
    close: () => {
      closed ??= new Promise<void>((resolve, reject) => {
        closing = true;
        world.close();
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
        for (const socket of sockets) socket.destroy();
      });
      return closed;
    },
  };
}
