/**
 * Streams the chosen upstream response to the client as it arrives: chunk by chunk, honouring
 * back-pressure (we wait for 'drain' rather than buffering), with SSE usage captured on the way
 * and JSON usage read from the tail of the body. Reports how the response ended so the request
 * is billed for exactly what was delivered.
 */
import type { ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { usageFromOpenAI, type Usage } from '../billing/cost.js';
import { SseUsageTracker } from '../billing/sse-usage.js';
import { clientHeaders } from '../upstream/forward-headers.js';

export type RelayEnd = 'completed' | 'client-gone' | 'upstream-error';

export interface RelayResult {
  readonly end: RelayEnd;
  readonly bytes: number;
  readonly usage: Usage | undefined;
  /** Text delivered on a stream that ended without usage (for the tokenizer fallback). */
  readonly deliveredText: string;
}

/** JSON bodies up to this size are kept to read `usage`; bigger ones are passed through only. */
const MAX_CAPTURE = 8 * 1024 * 1024;

export async function relayResponse(
  res: ServerResponse,
  upstream: Dispatcher.ResponseData,
  opts: { stripUsageChunk: boolean; requestId: string; meter: boolean },
): Promise<RelayResult> {
  const headers = clientHeaders(upstream.headers);
  const contentType = String(headers['content-type'] ?? '');
  const sse = contentType.startsWith('text/event-stream');
  const tracker =
    sse && opts.meter ? new SseUsageTracker({ stripUsageChunk: opts.stripUsageChunk }) : undefined;
  const capture = !sse && opts.meter && contentType.includes('json') && !('content-encoding' in headers);
  if (sse) {
    delete headers['content-length'];
    headers['cache-control'] = 'no-cache';
    headers['x-accel-buffering'] = 'no';
  }
  headers['x-request-id'] = opts.requestId;
  res.writeHead(upstream.statusCode, headers);
  if (sse) res.flushHeaders();

  const chunks: Buffer[] = [];
  let captured = 0;
  let bytes = 0;
  let end: RelayEnd = 'completed';
  const body = upstream.body;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (res.destroyed) {
        end = 'client-gone';
        break;
      }
      const out = tracker === undefined ? chunk : tracker.push(chunk);
      if (capture && captured + chunk.length <= MAX_CAPTURE) {
        chunks.push(chunk);
        captured += chunk.length;
      }
      if (out.length === 0) continue;
      bytes += out.length;
      if (!res.write(out)) {
        const ok = await drained(res);
        if (!ok) {
          end = 'client-gone';
          break;
        }
      }
    }
  } catch {
    end = res.destroyed ? 'client-gone' : 'upstream-error';
  }
  if (end !== 'completed') body.destroy();

  let usage: Usage | undefined;
  let deliveredText = '';
  if (tracker !== undefined) {
    const fin = tracker.finish();
    if (end === 'completed' && fin.tail.length > 0 && !res.destroyed) {
      bytes += fin.tail.length;
      res.write(fin.tail);
    }
    usage = fin.usage;
    deliveredText = fin.deliveredText;
  } else if (capture && end === 'completed') {
    usage = usageFromBody(Buffer.concat(chunks, captured));
  }
  if (end === 'completed') res.end();
  else res.destroy();
  return { end, bytes, usage, deliveredText };
}

function drained(res: ServerResponse): Promise<boolean> {
  return new Promise((resolve) => {
    const onDrain = (): void => {
      cleanup();
      resolve(true);
    };
    const onClose = (): void => {
      cleanup();
      resolve(false);
    };
    const cleanup = (): void => {
      res.off('drain', onDrain);
      res.off('close', onClose);
    };
    res.on('drain', onDrain);
    res.on('close', onClose);
  });
}

const USAGE_KEY = Buffer.from('"usage"');

/**
 * Reads `usage` from a JSON response without parsing the whole (possibly large) body: usage is
 * an object of numbers near the end, so the last `"usage"` key is found and only its object parsed.
 */
export function usageFromBody(body: Buffer): Usage | undefined {
  const at = body.lastIndexOf(USAGE_KEY);
  if (at < 0) return undefined;
  const open = body.indexOf(0x7b, at);
  // Only `"usage": {` counts: `"usage": null` followed by other objects must not match.
  if (open < 0 || !/^\s*:\s*$/.test(body.subarray(at + USAGE_KEY.length, open).toString('latin1')))
    return undefined;
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
