/**
 * Streams the chosen upstream response to the client as it arrives: chunk by chunk, honouring
 * back-pressure (we wait for 'drain' rather than buffering), with SSE usage captured on the way
 * and JSON usage read from the tail of the body. Reports how the response ended so the request
 * is billed for exactly what was delivered.
 *
 * The end of a complete answer is held back: the last chunk of a body of known length, the
 * events from `data: [DONE]` (or the terminal responses-API event) on, and the end of the
 * response itself. The caller settles the request, waits for the settlement to be journaled and
 * only then calls `release`: a client never holds a complete answer whose bill could still be
 * lost with the process.
 */
import type { ServerResponse } from 'node:http';
import { usageFromOpenAI, type Usage } from '../billing/cost.js';
import { GatewayError, sendError } from '../errors/catalogue.js';
import { SseUsageTracker } from '../billing/sse-usage.js';
import { CreatedIdScanner, findCreatedId } from '../tenancy/created-id.js';
import { clientHeaders } from '../upstream/forward-headers.js';
import type { UpstreamResponse } from '../upstream/upstream-client.js';

export type RelayEnd = 'completed' | 'client-gone' | 'upstream-error';

export interface RelayResult {
  readonly end: RelayEnd;
  readonly bytes: number;
  readonly usage: Usage | undefined;
  /** Text delivered on a stream that ended without usage (for the tokenizer fallback). */
  readonly deliveredText: string;
  /** Id of the object the answer created, when asked to look for one (`scanId`). */
  readonly createdId: string | undefined;
  /** A JSON answer's bytes (up to 8 MiB), for the caller to read fields of a created object. */
  readonly body: Buffer | undefined;
  /** When the answer's first body bytes arrived (performance.now()), for the request log's TTFB. */
  readonly firstByteAt: number | undefined;
}

/** A relayed answer whose end waits for `release`. */
export interface Relayed extends RelayResult {
  /**
   * Set when nothing of the answer reached the client and it was refused instead (a success
   * whose JSON body is not JSON): `release` sends this error, and nothing is charged.
   */
  readonly refused?: GatewayError;
  /**
   * Sends what was held back of a complete answer and ends the response (once the request's
   * settlement is journaled). Does nothing for an answer that broke off (already destroyed).
   */
  readonly release: () => void;
}

const NOTHING = (): void => undefined;

/** JSON bodies up to this size are kept to read `usage`; bigger ones are passed through only. */
const MAX_CAPTURE = 8 * 1024 * 1024;

export async function relayResponse(
  res: ServerResponse,
  upstream: UpstreamResponse,
  opts: {
    stripUsageChunk: boolean;
    /** The gateway's own response headers (request id, rate limits), added to upstream's. */
    headers: Readonly<Record<string, string>>;
    /** Id prefix of the object this answer creates (`resp_`, `file-`): find and return its id. */
    scanId?: string | undefined;
    /** Called once when the created id goes by in a stream (before the stream ends). */
    onId?: ((id: string) => void) | undefined;
  },
): Promise<Relayed> {
  const headers = clientHeaders(upstream.headers, opts.headers);
  const contentType = String(headers['content-type'] ?? '');
  const sse = contentType.startsWith('text/event-stream');
  const tracker = sse ? new SseUsageTracker({ stripUsageChunk: opts.stripUsageChunk }) : undefined;
  const capture = !sse && contentType.includes('json') && !('content-encoding' in headers);
  if (sse) {
    delete headers['content-length'];
    headers['cache-control'] = 'no-cache';
    headers['x-accel-buffering'] = 'no';
  }
  // One headers object for writeHead: headers set earlier with setHeader would send Node down
  // its slower merging path. A JSON answer keeps its head until its first bytes leave: one that
  // arrives whole (nearly all) is checked before anything is sent.
  let headWritten = false;
  const head = (): void => {
    if (headWritten) return;
    headWritten = true;
    res.writeHead(upstream.statusCode, headers);
  };
  if (!capture) head();
  if (sse) res.flushHeaders();

  // A stream's created id is found on the way; a JSON answer's in the captured body afterwards.
  const scanner = sse && opts.scanId !== undefined ? new CreatedIdScanner(opts.scanId, opts.onId) : undefined;
  const relayed = await pump(res, upstream, tracker, capture, scanner, head);
  const { end, held } = relayed;
  if (
    end === 'completed' &&
    !headWritten &&
    upstream.statusCode < 300 &&
    relayed.captured !== undefined &&
    !looksLikeJson(relayed.captured)
  ) {
    // An HTML error page or a cut body sent as a success: a clear error instead, never charged.
    const refused = new GatewayError('upstream_invalid_response');
    const body = relayed.captured;
    const release = (): void => sendError(res, refused, opts.headers);
    return {
      end: 'upstream-error',
      bytes: 0,
      usage: undefined,
      deliveredText: '',
      createdId: undefined,
      body,
      firstByteAt: relayed.firstByteAt,
      release,
      refused,
    };
  }
  let bytes = relayed.bytes;
  let usage: Usage | undefined;
  let deliveredText = '';
  if (tracker !== undefined) {
    const fin = tracker.finish();
    if (end === 'completed' && fin.tail.length > 0) {
      bytes += fin.tail.length;
      held.push(fin.tail);
    }
    usage = fin.usage;
    deliveredText = fin.deliveredText;
  } else if (relayed.captured !== undefined && end === 'completed') {
    usage = usageFromBody(relayed.captured);
  }
  if (end !== 'completed') res.destroy();
  const body = relayed.captured;
  const createdId =
    scanner?.id ??
    (opts.scanId !== undefined && body !== undefined ? findCreatedId(body, opts.scanId) : undefined);
  const release =
    end === 'completed'
      ? () => {
          head();
          endWith(res, held);
        }
      : NOTHING;
  return { end, bytes, usage, deliveredText, createdId, body, firstByteAt: relayed.firstByteAt, release };
}

/** Writes the held-back end of an answer and ends the response, in one write when it can. */
function endWith(res: ServerResponse, held: readonly Buffer[]): void {
  if (res.destroyed || res.writableEnded) return;
  if (held.length === 0) res.end();
  else res.end(held.length === 1 ? held[0] : Buffer.concat(held));
}

/**
 * For an answer that creates work billed later (a batch, a background response): reads the whole
 * (small, JSON) body first, lets `beforeSend` record what it created durably, and only then sends
 * it — so once the client holds the new id, the gateway cannot forget to bill it. The same path
 * lets an answer be rewritten before it leaves (`rewrite`).
 */
export async function relayHeld(
  res: ServerResponse,
  upstream: UpstreamResponse,
  opts: {
    headers: Readonly<Record<string, string>>;
    scanId: string | undefined;
    beforeSend: (result: RelayResult) => Promise<void>;
    /** Rewrites a successful answer before it leaves (a list the caller may see only part of). */
    rewrite?: ((body: Buffer) => Promise<Buffer>) | undefined;
  },
): Promise<Relayed> {
  let firstByteAt: number | undefined;
  const read = await readAll(upstream, () => (firstByteAt ??= performance.now()));
  const body =
    read !== undefined && opts.rewrite !== undefined && upstream.statusCode < 300
      ? await opts.rewrite(read)
      : read;
  const result: RelayResult = {
    end: body === undefined ? 'upstream-error' : 'completed',
    bytes: body?.length ?? 0,
    usage: body === undefined ? undefined : usageFromBody(body),
    deliveredText: '',
    createdId: body === undefined || opts.scanId === undefined ? undefined : findCreatedId(body, opts.scanId),
    body,
    firstByteAt,
  };
  await opts.beforeSend(result);
  if (body === undefined || res.destroyed) {
    res.destroy();
    return { ...result, end: body === undefined ? 'upstream-error' : 'client-gone', release: NOTHING };
  }
  const release = (): void => {
    if (res.destroyed) return;
    const headers = clientHeaders(upstream.headers, opts.headers);
    headers['content-length'] = String(body.length);
    res.writeHead(upstream.statusCode, headers);
    res.end(body);
  };
  return { ...result, release };
}

/** The whole body (at most MAX_CAPTURE), or undefined when upstream broke off. */
function readAll(upstream: UpstreamResponse, onFirst: () => void): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    upstream.body.attach({
      onData(chunk) {
        if (size === 0) onFirst();
        size += chunk.length;
        if (size > MAX_CAPTURE) {
          upstream.body.destroy();
          resolve(undefined);
          return;
        }
        chunks.push(chunk);
      },
      onEnd: () => resolve(Buffer.concat(chunks, size)),
      onError: () => resolve(undefined),
    });
  });
}

/**
 * Moves the body chunk by chunk as upstream delivers it, pausing upstream while the client's
 * socket is full. The end of the answer is held (`held`): the last chunk of a body of declared
 * length (so a small JSON answer still leaves in one write, with its headers), and a stream's
 * events from its terminal event on.
 *
 * A client that leaves needs no listener here: the pipeline cancels the upstream request, which
 * ends this body with an error while `res` is already destroyed ('client-gone').
 */
function pump(
  res: ServerResponse,
  upstream: UpstreamResponse,
  tracker: SseUsageTracker | undefined,
  capture: boolean,
  scanner: CreatedIdScanner | undefined,
  head: () => void,
): Promise<{
  end: RelayEnd;
  bytes: number;
  captured: Buffer | undefined;
  held: Buffer[];
  firstByteAt: number | undefined;
}> {
  const body = upstream.body;
  const declared = Number(upstream.headers['content-length'] ?? NaN);
  const held: Buffer[] = [];
  let chunks: Buffer[] | undefined;
  let captured = 0;
  let received = 0;
  let bytes = 0;
  let waiting = false;
  let firstByteAt: number | undefined;
  return new Promise((resolve) => {
    let settled = false;
    const finish = (end: RelayEnd): void => {
      if (settled) return;
      settled = true;
      if (waiting) res.off('drain', onDrain);
      if (end !== 'completed') body.destroy();
      const kept =
        chunks === undefined ? EMPTY : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, captured);
      resolve({ end, bytes, captured: capture ? kept : undefined, held, firstByteAt });
    };
    const onDrain = (): void => {
      waiting = false;
      body.resume();
    };
    body.attach({
      onData(chunk) {
        if (settled) return;
        if (received === 0) firstByteAt = performance.now();
        received += chunk.length;
        scanner?.push(chunk);
        if (capture && captured + chunk.length <= MAX_CAPTURE) {
          (chunks ??= []).push(chunk);
          captured += chunk.length;
        }
        const out = tracker === undefined ? chunk : tracker.push(chunk);
        if (out.length === 0) return;
        bytes += out.length;
        if (held.length > 0 || (tracker === undefined ? received === declared : tracker.ended)) {
          held.push(out);
          return;
        }
        head();
        if (!res.write(out) && !waiting) {
          // Back-pressure: hold upstream until the client's socket drains.
          waiting = true;
          body.pause();
          res.once('drain', onDrain);
        }
      },
      onEnd: () => finish('completed'),
      onError: () => finish(res.destroyed ? 'client-gone' : 'upstream-error'),
    });
  });
}

const EMPTY = Buffer.alloc(0);

/**
 * Whether a body can be JSON, cheaply: empty (a 204), or starting as a JSON value does, with an
 * object or array closed at its end. Catches an HTML error page or a cut object sent as a success.
 */
function looksLikeJson(body: Buffer): boolean {
  let first = 0;
  while (first < body.length && isJsonSpace(body[first]!)) first++;
  if (first === body.length) return true;
  let last = body.length - 1;
  while (last > first && isJsonSpace(body[last]!)) last--;
  const a = body[first]!;
  const z = body[last];
  if (a === 0x7b) return z === 0x7d; // {…}
  if (a === 0x5b) return z === 0x5d; // […]
  // A string, number, true, false or null.
  return a === 0x22 || a === 0x2d || (a >= 0x30 && a <= 0x39) || a === 0x74 || a === 0x66 || a === 0x6e;
}

function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}
const USAGE_KEY = Buffer.from('"usage"');

/**
 * Reads `usage` from a JSON response without parsing the whole (possibly large) body: usage is
 * an object of numbers near the end, so the last `"usage"` key is found and only its object parsed.
 */
export function usageFromBody(body: Buffer): Usage | undefined {
  const at = body.lastIndexOf(USAGE_KEY);
  if (at < 0) return undefined;
  // Only `"usage": {` counts (JSON whitespace and one colon between): `"usage": null` followed by
  // other objects must not match.
  let open = at + USAGE_KEY.length;
  let colon = false;
  for (; open < body.length; open++) {
    const c = body[open];
    if (c === 0x3a && !colon) colon = true;
    else if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
  }
  if (!colon || body[open] !== 0x7b) return undefined;
  let depth = 0;
  let inString = false;
  for (let i = open; i < body.length; i++) {
    const c = body[i];
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x7b) depth++;
    else if (c === 0x7d && --depth === 0) {
      try {
        return usageFromOpenAI(JSON.parse(body.subarray(open, i + 1).toString('utf8')));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}
