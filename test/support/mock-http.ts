// Plumbing shared by the modules of the mock OpenAI upstream (test/support/mock-*.ts): the reply type the
// handlers return, OpenAI-shaped error bodies, SSE framing, request body parsing (JSON and multipart), and
// the deterministic token counting every endpoint uses so that usage numbers can be asserted exactly.
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

export type Json = Record<string, unknown>;
export type HeaderMap = Record<string, string>;

export type Reply =
  | { type: 'body'; status: number; headers: HeaderMap; body: Buffer }
  | { type: 'sse'; status: number; headers: HeaderMap; events: string[] };

const SPEECH_BYTES = 64 * 1024;
const EMBEDDING_DIMENSIONS = 8;

// ---------------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------------

export function isJson(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function str(value: unknown, fallback: string): string {
  return typeof value === 'string' && value !== '' ? value : fallback;
}

/** A string field, or null when it is absent or not a string (OpenAI echoes absent fields as null). */
export function strOrNull(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

export function nowSec(): number {
  return Math.floor(Date.now() / 1000);
}

/** The strings of an array parameter (other values ignored); [] when it is not an array. */
export function stringArray(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

/** `metadata` as OpenAI stores it: the object given, else an empty object. */
export function metadataOf(value: unknown): Json {
  return isJson(value) ? { ...value } : {};
}

export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

// ---------------------------------------------------------------------------------------------------
// Deterministic payloads (exported publicly through mock-upstream.ts)
// ---------------------------------------------------------------------------------------------------

/** The deterministic 8-dimension vector the mock returns for one embedding input. */
export function mockEmbedding(text: string): number[] {
  const digest = createHash('sha256').update(text).digest();
  return Array.from(digest.subarray(0, EMBEDDING_DIMENSIONS), (byte) => (byte - 128) / 128);
}

/** The deterministic bytes the mock returns from /v1/audio/speech for `input`. */
export function mockSpeechBytes(input: string, size = SPEECH_BYTES): Buffer {
  // 4 KiB blocks, each its own digest repeated: distinct blocks (reordering shows) at low cost.
  const out = Buffer.alloc(size);
  for (let i = 0; i * 4096 < size; i++) {
    const digest = createHash('sha256').update(`${i}:${input}`).digest();
    for (let at = i * 4096; at < Math.min(size, (i + 1) * 4096); at += 32) digest.copy(out, at);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------------------

export function jsonReply(status: number, payload: unknown, headers: HeaderMap = {}): Reply {
  return {
    type: 'body',
    status,
    headers: { 'content-type': 'application/json', ...headers },
    body: Buffer.from(JSON.stringify(payload)),
  };
}

export function bytesReply(contentType: string, body: Buffer): Reply {
  return { type: 'body', status: 200, headers: { 'content-type': contentType }, body };
}

export function errorBody(
  message: string,
  type: string,
  code: string | null,
  param: string | null = null,
): Json {
  return { error: { message, type, param, code } };
}

export function errorReply(
  status: number,
  message: string,
  type: string,
  code: string | null,
  headers?: HeaderMap,
): Reply {
  return jsonReply(status, errorBody(message, type, code), headers);
}

/** A 4xx `invalid_request_error`, the type of every client mistake OpenAI reports. */
export function invalidRequest(
  status: number,
  message: string,
  param: string | null = null,
  code: string | null = null,
): Reply {
  return jsonReply(status, errorBody(message, 'invalid_request_error', code, param));
}

export function missingParamReply(param: string): Reply {
  return invalidRequest(400, `Missing required parameter: '${param}'.`, param, 'missing_required_parameter');
}

export function invalidValueReply(param: string, value: unknown, allowed: readonly string[]): Reply {
  const supported = allowed.map((item) => `'${item}'`).join(', ');
  return invalidRequest(
    400,
    `Invalid value: '${String(value)}'. Supported values are: ${supported}.`,
    param,
    'invalid_value',
  );
}

export function invalidJsonReply(): Reply {
  return errorReply(
    400,
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
    'invalid_request_error',
    null,
  );
}

/** The Files API wording: `No such File object: file-…` (also used for uploads). */
export function noSuchReply(what: string, id: string, param = 'id'): Reply {
  return invalidRequest(404, `No such ${what} object: ${id}`, param);
}

/** The wording of the newer APIs (batches, vector stores, assistants…): `No batch found with id '…'.` */
export function notFoundWithId(what: string, id: string, param: string | null = null): Reply {
  return invalidRequest(404, `No ${what} found with id '${id}'.`, param);
}

/** The Responses-era wording (responses, conversations, containers, videos): `Response with id '…' not found.` */
export function withIdNotFound(what: string, id: string, param: string | null = null): Reply {
  return invalidRequest(404, `${what} with id '${id}' not found.`, param);
}

export function deletedReply(id: string, object: string): Reply {
  return jsonReply(200, { id, object, deleted: true });
}

// ---------------------------------------------------------------------------------------------------
// Server-sent events
// ---------------------------------------------------------------------------------------------------

export function sseData(payload: unknown): string {
  return `data: ${JSON.stringify(payload)}\n\n`;
}

export function sseEvent(type: string, payload: unknown): string {
  return `event: ${type}\ndata: ${JSON.stringify(payload)}\n\n`;
}

export function sseReply(events: string[]): Reply {
  return {
    type: 'sse',
    status: 200,
    headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' },
    events,
  };
}

// ---------------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------------

/** The body as a JSON object, or null when it is not one. */
export function parseJsonObject(body: Buffer): Json | null {
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    return isJson(parsed) ? parsed : null;
  } catch {
    return null;
  }
}

export async function parseForm(headers: IncomingHttpHeaders, body: Buffer): Promise<FormData | null> {
  const contentType = headerValue(headers['content-type']);
  if (!contentType?.toLowerCase().startsWith('multipart/form-data')) return null;
  try {
    // undici's multipart parser, so that the mock reads forms exactly as a fetch-based server would.
    const request = new Request('http://mock-upstream.invalid/', {
      method: 'POST',
      headers: { 'content-type': contentType },
      body: new Uint8Array(body),
    });
    return await request.formData();
  } catch {
    return null;
  }
}

export function formFile(form: FormData | null, field: string): File | null {
  const value = form?.get(field);
  return value === undefined || value === null || typeof value === 'string' ? null : value;
}

export function multipartErrorReply(field: string): Reply {
  return invalidRequest(400, `Could not parse multipart form: missing '${field}'`, field);
}

// ---------------------------------------------------------------------------------------------------
// Token counting and text helpers: ~4 characters per prompt token, one completion token per word
// ---------------------------------------------------------------------------------------------------

export function promptTokens(chars: number): number {
  return Math.max(1, Math.ceil(chars / 4));
}

export function wordCount(text: string): number {
  return text.split(/\s+/).filter((word) => word !== '').length;
}

/** Characters of message text: strings, and the `content` / `text` fields of objects, recursively. */
export function textChars(value: unknown): number {
  if (typeof value === 'string') return value.length;
  if (Array.isArray(value)) return value.reduce((sum: number, item) => sum + textChars(item), 0);
  if (isJson(value)) return textChars(value.content) + textChars(value.text);
  return 0;
}

/** Characters of a prompt / embedding input: strings count their length, token ids count 4 each. */
export function inputChars(value: unknown): number {
  if (typeof value === 'string') return value.length;
  if (typeof value === 'number') return 4;
  if (Array.isArray(value)) return value.reduce((sum: number, item) => sum + inputChars(item), 0);
  return 0;
}

/** Splits `content` into `n` pieces along word boundaries; the pieces concatenate back to `content`. */
export function splitPieces(content: string, n: number): string[] {
  const count = Math.max(1, Math.floor(n));
  const lead = /^\s*/.exec(content)?.[0] ?? '';
  const words = content.slice(lead.length).match(/\S+\s*/g) ?? [];
  const pieces: string[] = [];
  for (let i = 0; i < count; i++) {
    const from = Math.floor((i * words.length) / count);
    const to = Math.floor(((i + 1) * words.length) / count);
    pieces.push((i === 0 ? lead : '') + words.slice(from, to).join(''));
  }
  return pieces;
}

/** Whether a streamed chat or completion request asked for the final usage chunk. */
export function includeUsage(body: Json): boolean {
  return isJson(body.stream_options) && body.stream_options.include_usage === true;
}

export function chatUsage(prompt: number, completion: number): Json {
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}
