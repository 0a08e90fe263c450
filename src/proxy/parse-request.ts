/**
 * Turns a raw /v1 request body into what the pipeline needs: the model (for gates and prices),
 * whether the answer streams, and the exact bytes to send upstream. The original bytes are sent
 * untouched unless the gateway must ask upstream for stream usage, so retries are byte-identical.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';

export interface ParsedRequest {
  /** The model named by the request, when it names one. */
  readonly model: string | undefined;
  readonly stream: boolean;
  /** Parsed JSON object (undefined for multipart, binary and empty bodies). */
  readonly json: Record<string, unknown> | undefined;
  /** Bytes to send upstream (undefined for an empty body). */
  readonly body: Buffer | undefined;
  /** True when the gateway added `stream_options.include_usage` and must strip the usage chunk. */
  readonly stripUsageChunk: boolean;
  readonly multipart: boolean;
}

const USAGE_STREAM_PATHS = new Set(['/v1/chat/completions', '/v1/completions']);

export function parseRequest(
  pathname: string,
  headers: IncomingHttpHeaders,
  raw: Buffer,
): { ok: true; req: ParsedRequest } | { ok: false; error: GatewayError } {
  const contentType = (headers['content-type'] ?? '').toLowerCase();
  if (raw.length === 0) return { ok: true, req: opaque(undefined) };
  if (contentType.startsWith('multipart/form-data')) {
    const model = multipartField(raw, 'model');
    return {
      ok: true,
      req: { ...opaque(raw), model, stream: multipartField(raw, 'stream') === 'true', multipart: true },
    };
  }
  const looksJson =
    contentType === '' || contentType.includes('json') || contentType.startsWith('text/plain');
  // Binary or other bodies are forwarded untouched and unpriced by content.
  if (!looksJson) return { ok: true, req: opaque(raw) };
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch (err: unknown) {
    const detail = err instanceof Error ? err.message : 'parse error';
    return {
      ok: false,
      error: new GatewayError('invalid_json', `We could not parse the JSON body of your request: ${detail}`),
    };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return { ok: false, error: new GatewayError('invalid_body') };
  }
  const json = parsed as Record<string, unknown>;
  const modelValue = Object.hasOwn(json, 'model') ? json['model'] : undefined;
  if (modelValue !== undefined && typeof modelValue !== 'string') {
    return { ok: false, error: new GatewayError('invalid_value', 'model must be a string.', 'model') };
  }
  const stream = json['stream'] === true;
  let body = raw;
  let stripUsageChunk = false;
  if (stream && USAGE_STREAM_PATHS.has(pathname)) {
    const opts = json['stream_options'];
    const wants =
      typeof opts === 'object' &&
      opts !== null &&
      (opts as Record<string, unknown>)['include_usage'] === true;
    if (!wants) {
      // Ask upstream for the usage chunk so the stream is billed from upstream's own count.
      body = withIncludeUsage(raw, json, opts);
      stripUsageChunk = true;
    }
  }
  return { ok: true, req: { model: modelValue, stream, json, body, stripUsageChunk, multipart: false } };
}

/** A body the gateway does not look into. */
function opaque(body: Buffer | undefined): ParsedRequest {
  return { model: undefined, stream: false, json: undefined, body, stripUsageChunk: false, multipart: false };
}

const INCLUDE_USAGE = Buffer.from('"stream_options":{"include_usage":true},');

/**
 * The body with `stream_options.include_usage` set. When the client sent no `stream_options`, the
 * member is spliced in right after the opening brace (the object has at least `stream`, so the
 * comma is always valid) instead of re-serialising a possibly large body.
 */
function withIncludeUsage(raw: Buffer, json: Record<string, unknown>, opts: unknown): Buffer {
  if (opts === undefined) {
    const brace = raw.indexOf(0x7b);
    if (brace >= 0)
      return Buffer.concat([raw.subarray(0, brace + 1), INCLUDE_USAGE, raw.subarray(brace + 1)]);
  }
  const streamOptions =
    typeof opts === 'object' && opts !== null ? { ...(opts as Record<string, unknown>) } : {};
  streamOptions['include_usage'] = true;
  return Buffer.from(JSON.stringify({ ...json, stream_options: streamOptions }));
}

/** Reads a small text field (e.g. `model`) out of a multipart body without parsing the files. */
export function multipartField(raw: Buffer, name: string): string | undefined {
  const marker = Buffer.from(`name="${name}"`);
  const at = raw.indexOf(marker);
  if (at < 0) return undefined;
  const start = raw.indexOf('\r\n\r\n', at);
  if (start < 0) return undefined;
  const end = raw.indexOf('\r\n', start + 4);
  if (end < 0 || end - start > 512) return undefined;
  return raw.subarray(start + 4, end).toString('utf8');
}
