// Programmable mock of the OpenAI API for the end-to-end tests: a plain node:http server on 127.0.0.1
// whose behaviour (normal OpenAI answers, canned errors, hangs, dropped streams, delays) is chosen per
// upstream key, and which records every request it receives (including client aborts) for assertions.
// It is one long file on purpose: it is a single fake of one external API, read top to bottom as a
// route table, and splitting it would scatter that table without making any piece reusable.
import { createHash } from 'node:crypto';
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

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

export interface StreamOptions {
  /** Number of content chunks (the first one also carries `delta.role`). */
  chunks: number;
  /** Delay between two SSE events. */
  intervalMs: number;
  /** Assistant text, used by streamed and non-streamed answers alike. */
  content: string;
}

export interface MockUpstreamOptions {
  defaultBehaviour?: Behaviour;
  stream?: Partial<StreamOptions>;
}

export interface MockUpstream {
  url: string;
  /** The underlying HTTP server (WebSocket mocks attach their 'upgrade' handler to it). */
  server: Server;
  setKey(key: string, b: Behaviour): void;
  setDefault(b: Behaviour): void;
  setStream(opts: Partial<StreamOptions>): void;
  requests: RecordedRequest[];
  reset(): void;
  close(): Promise<void>;
}

export const DEFAULT_STREAM_OPTIONS: Readonly<StreamOptions> = {
  chunks: 5,
  intervalMs: 0,
  content: 'Hello from mock',
};

export const MOCK_MODEL_IDS: readonly string[] = [
  'gpt-4o-mini',
  'gpt-4o',
  'gpt-4.1-mini',
  'gpt-3.5-turbo-instruct',
  'text-embedding-3-small',
  'omni-moderation-latest',
  'dall-e-3',
  'whisper-1',
  'tts-1',
];

const SPEECH_BYTES = 64 * 1024;
const EMBEDDING_DIMENSIONS = 8;
const MODEL_CREATED = 1_700_000_000;

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

type Json = Record<string, unknown>;
type HeaderMap = Record<string, string>;

type Reply =
  | { type: 'body'; status: number; headers: HeaderMap; body: Buffer }
  | { type: 'sse'; status: number; headers: HeaderMap; events: string[] };

interface StoredFile {
  meta: Json;
  content: Buffer;
}

interface State {
  seq: number;
  files: Map<string, StoredFile>;
  batches: Map<string, Json>;
  responses: Map<string, Json>;
}

interface Ctx {
  method: string;
  path: string;
  query: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  key: string | null;
  stream: StreamOptions;
  state: State;
}

function isJson(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function str(value: unknown, fallback: string): string {
  return typeof value === 'string' && value !== '' ? value : fallback;
}

function nowSec(): number {
  return Math.floor(Date.now() / 1000);
}

function nextId(state: State, prefix: string): string {
  state.seq += 1;
  return `${prefix}${state.seq}`;
}

function jsonReply(status: number, payload: unknown, headers: HeaderMap = {}): Reply {
  return {
    type: 'body',
    status,
    headers: { 'content-type': 'application/json', ...headers },
    body: Buffer.from(JSON.stringify(payload)),
  };
}

function errorBody(message: string, type: string, code: string | null, param: string | null = null): Json {
  return { error: { message, type, param, code } };
}

function errorReply(status: number, message: string, type: string, code: string | null, headers?: HeaderMap) {
  return jsonReply(status, errorBody(message, type, code), headers);
}

function sseData(payload: unknown): string {
  return `data: ${JSON.stringify(payload)}\n\n`;
}

function sseEvent(type: string, payload: unknown): string {
  return `event: ${type}\ndata: ${JSON.stringify(payload)}\n\n`;
}

function sseReply(events: string[]): Reply {
  return {
    type: 'sse',
    status: 200,
    headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' },
    events,
  };
}

function invalidJsonReply(): Reply {
  return errorReply(
    400,
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
    'invalid_request_error',
    null,
  );
}

function notFoundReply(what: string, id: string): Reply {
  return jsonReply(404, errorBody(`No such ${what}: ${id}`, 'invalid_request_error', null, 'id'));
}

// ---------------------------------------------------------------------------------------------------
// Token counting and text helpers
// ---------------------------------------------------------------------------------------------------

function promptTokens(chars: number): number {
  return Math.max(1, Math.ceil(chars / 4));
}

function wordCount(text: string): number {
  return text.split(/\s+/).filter((word) => word !== '').length;
}

/** Characters of message text: strings, and the `content` / `text` fields of objects, recursively. */
function textChars(value: unknown): number {
  if (typeof value === 'string') return value.length;
  if (Array.isArray(value)) return value.reduce((sum: number, item) => sum + textChars(item), 0);
  if (isJson(value)) return textChars(value.content) + textChars(value.text);
  return 0;
}

/** Characters of a prompt / embedding input: strings count their length, token ids count 4 each. */
function inputChars(value: unknown): number {
  if (typeof value === 'string') return value.length;
  if (typeof value === 'number') return 4;
  if (Array.isArray(value)) return value.reduce((sum: number, item) => sum + inputChars(item), 0);
  return 0;
}

/** Splits `content` into `n` pieces along word boundaries; the pieces concatenate back to `content`. */
function splitPieces(content: string, n: number): string[] {
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

function chatUsage(prompt: number, completion: number): Json {
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

// ---------------------------------------------------------------------------------------------------
// Endpoint handlers (behaviour 'ok')
// ---------------------------------------------------------------------------------------------------

type JsonHandler = (ctx: Ctx, body: Json, params: string[]) => Reply | Promise<Reply>;
type Handler = (ctx: Ctx, params: string[]) => Reply | Promise<Reply>;

function withJson(handler: JsonHandler): Handler {
  return (ctx, params) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(ctx.body.toString('utf8'));
    } catch {
      return invalidJsonReply();
    }
    return isJson(parsed) ? handler(ctx, parsed, params) : invalidJsonReply();
  };
}

function includeUsage(body: Json): boolean {
  return isJson(body.stream_options) && body.stream_options.include_usage === true;
}

function chatCompletions(ctx: Ctx, body: Json): Reply {
  const model = str(body.model, 'gpt-4o-mini');
  const content = ctx.stream.content;
  const usage = chatUsage(promptTokens(textChars(body.messages)), wordCount(content));
  const id = nextId(ctx.state, 'chatcmpl-mock');
  const created = nowSec();
  if (body.stream === true) return sseReply(chatStreamEvents(ctx, body, { id, created, model }, usage));
  return jsonReply(200, {
    id,
    object: 'chat.completion',
    created,
    model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content, refusal: null, annotations: [] },
        logprobs: null,
        finish_reason: 'stop',
      },
    ],
    usage,
    service_tier: 'default',
    system_fingerprint: 'fp_mock',
  });
}

function chatStreamEvents(ctx: Ctx, body: Json, head: Json, usage: Json): string[] {
  const withUsage = includeUsage(body);
  const base = { ...head, object: 'chat.completion.chunk', system_fingerprint: 'fp_mock' };
  const chunk = (delta: Json, finishReason: string | null): string =>
    sseData({
      ...base,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      ...(withUsage ? { usage: null } : {}),
    });
  const events = splitPieces(ctx.stream.content, ctx.stream.chunks).map((piece, i) =>
    chunk(i === 0 ? { role: 'assistant', content: piece, refusal: null } : { content: piece }, null),
  );
  events.push(chunk({}, 'stop'));
  if (withUsage) events.push(sseData({ ...base, choices: [], usage }));
  events.push('data: [DONE]\n\n');
  return events;
}

function completions(ctx: Ctx, body: Json): Reply {
  const model = str(body.model, 'gpt-3.5-turbo-instruct');
  const text = ctx.stream.content;
  const usage = chatUsage(promptTokens(inputChars(body.prompt)), wordCount(text));
  const head = { id: nextId(ctx.state, 'cmpl-mock'), object: 'text_completion', created: nowSec(), model };
  if (body.stream === true) return sseReply(completionStreamEvents(ctx, body, head, usage));
  return jsonReply(200, {
    ...head,
    choices: [{ text, index: 0, logprobs: null, finish_reason: 'stop' }],
    usage,
    system_fingerprint: 'fp_mock',
  });
}

function completionStreamEvents(ctx: Ctx, body: Json, head: Json, usage: Json): string[] {
  const withUsage = includeUsage(body);
  const chunk = (text: string, finishReason: string | null): string =>
    sseData({
      ...head,
      choices: [{ text, index: 0, logprobs: null, finish_reason: finishReason }],
      ...(withUsage ? { usage: null } : {}),
    });
  const events = splitPieces(ctx.stream.content, ctx.stream.chunks).map((piece) => chunk(piece, null));
  events.push(chunk('', 'stop'));
  if (withUsage) events.push(sseData({ ...head, choices: [], usage }));
  events.push('data: [DONE]\n\n');
  return events;
}

function embeddingInputs(input: unknown): string[] {
  if (typeof input === 'string') return [input];
  if (!Array.isArray(input) || input.length === 0) return [];
  if (input.every((item) => typeof item === 'number')) return [input.join(',')];
  return input.map((item) => (typeof item === 'string' ? item : Array.isArray(item) ? item.join(',') : ''));
}

function encodeEmbedding(vector: number[], format: unknown): number[] | string {
  if (format !== 'base64') return vector;
  return Buffer.from(new Float32Array(vector).buffer).toString('base64');
}

function embeddings(_ctx: Ctx, body: Json): Reply {
  const inputs = embeddingInputs(body.input);
  if (inputs.length === 0) {
    return jsonReply(
      400,
      errorBody("'input' is a required property", 'invalid_request_error', null, 'input'),
    );
  }
  const tokens = promptTokens(inputChars(body.input));
  return jsonReply(200, {
    object: 'list',
    data: inputs.map((text, index) => ({
      object: 'embedding',
      index,
      embedding: encodeEmbedding(mockEmbedding(text), body.encoding_format),
    })),
    model: str(body.model, 'text-embedding-3-small'),
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  });
}

const MODERATION_CATEGORIES = [
  'harassment',
  'harassment/threatening',
  'hate',
  'hate/threatening',
  'illicit',
  'illicit/violent',
  'self-harm',
  'self-harm/intent',
  'self-harm/instructions',
  'sexual',
  'sexual/minors',
  'violence',
  'violence/graphic',
];

function moderationResult(): Json {
  const entries = <T>(value: T): Record<string, T> =>
    Object.fromEntries(MODERATION_CATEGORIES.map((name) => [name, value]));
  return {
    flagged: false,
    categories: entries(false),
    category_scores: entries(0.0001),
    category_applied_input_types: entries(['text']),
  };
}

function moderations(ctx: Ctx, body: Json): Reply {
  const count = Array.isArray(body.input) ? Math.max(1, body.input.length) : 1;
  return jsonReply(200, {
    id: nextId(ctx.state, 'modr-mock'),
    model: str(body.model, 'omni-moderation-latest'),
    results: Array.from({ length: count }, moderationResult),
  });
}

function imagesGenerations(_ctx: Ctx, body: Json): Reply {
  const n = typeof body.n === 'number' && body.n >= 1 ? Math.floor(body.n) : 1;
  const asBase64 = body.response_format === 'b64_json';
  const prompt = str(body.prompt, '');
  return jsonReply(200, {
    created: nowSec(),
    data: Array.from({ length: n }, (_, i) =>
      asBase64
        ? { b64_json: mockSpeechBytes(`image:${i}:${prompt}`, 64).toString('base64') }
        : { url: `https://mock-upstream.invalid/images/${i}.png` },
    ),
  });
}

async function parseForm(ctx: Ctx): Promise<FormData | null> {
  const contentType = headerValue(ctx.headers['content-type']);
  if (!contentType?.toLowerCase().startsWith('multipart/form-data')) return null;
  try {
    const request = new Request('http://mock-upstream.invalid/', {
      method: 'POST',
      headers: { 'content-type': contentType },
      body: new Uint8Array(ctx.body),
    });
    return await request.formData();
  } catch {
    return null;
  }
}

function formFile(form: FormData | null, field: string): File | null {
  const value = form?.get(field);
  return value === undefined || value === null || typeof value === 'string' ? null : value;
}

function multipartErrorReply(field: string): Reply {
  return jsonReply(
    400,
    errorBody(`Could not parse multipart form: missing '${field}'`, 'invalid_request_error', null, field),
  );
}

function audioText(verb: string): Handler {
  return async (ctx) => {
    const form = await parseForm(ctx);
    const file = formFile(form, 'file');
    if (file === null) return multipartErrorReply('file');
    const text = `${verb} ${file.size} bytes of ${file.name}`;
    const format = form?.get('response_format');
    if (format === 'text' || format === 'srt' || format === 'vtt') {
      return {
        type: 'body',
        status: 200,
        headers: { 'content-type': 'text/plain' },
        body: Buffer.from(text),
      };
    }
    return jsonReply(200, { text });
  };
}

function audioSpeech(_ctx: Ctx, body: Json): Reply {
  return {
    type: 'body',
    status: 200,
    headers: { 'content-type': 'audio/mpeg' },
    // `x_mock_bytes` (tests only) asks for a longer clip, e.g. to test back-pressure.
    body: mockSpeechBytes(
      str(body.input, ''),
      typeof body.x_mock_bytes === 'number' ? body.x_mock_bytes : SPEECH_BYTES,
    ),
  };
}

function modelObject(id: string): Json {
  return { id, object: 'model', created: MODEL_CREATED, owned_by: 'system' };
}

function listReply(data: Json[]): Reply {
  return jsonReply(200, { object: 'list', data, first_id: null, last_id: null, has_more: false });
}

async function filesCreate(ctx: Ctx): Promise<Reply> {
  const form = await parseForm(ctx);
  const file = formFile(form, 'file');
  if (file === null) return multipartErrorReply('file');
  const id = nextId(ctx.state, 'file-mock');
  const content = Buffer.from(await file.arrayBuffer());
  const purpose = form?.get('purpose');
  const meta: Json = {
    id,
    object: 'file',
    bytes: content.length,
    created_at: nowSec(),
    filename: file.name,
    purpose: typeof purpose === 'string' ? purpose : 'user_data',
    status: 'processed',
    expires_at: null,
    status_details: null,
  };
  ctx.state.files.set(id, { meta, content });
  return jsonReply(200, meta);
}

function fileById(ctx: Ctx, id: string, view: (file: StoredFile) => Reply): Reply {
  const file = ctx.state.files.get(id);
  return file === undefined ? notFoundReply('File', id) : view(file);
}

function fileDelete(ctx: Ctx, id: string): Reply {
  const existed = ctx.state.files.delete(id);
  return existed ? jsonReply(200, { id, object: 'file', deleted: true }) : notFoundReply('File', id);
}

function batchesCreate(ctx: Ctx, body: Json): Reply {
  const id = nextId(ctx.state, 'batch_mock');
  const created = nowSec();
  const batch: Json = {
    id,
    object: 'batch',
    endpoint: str(body.endpoint, '/v1/chat/completions'),
    errors: null,
    input_file_id: str(body.input_file_id, ''),
    completion_window: str(body.completion_window, '24h'),
    status: 'validating',
    output_file_id: null,
    error_file_id: null,
    created_at: created,
    in_progress_at: null,
    expires_at: created + 86_400,
    finalizing_at: null,
    completed_at: null,
    failed_at: null,
    expired_at: null,
    cancelling_at: null,
    cancelled_at: null,
    request_counts: { total: 0, completed: 0, failed: 0 },
    metadata: isJson(body.metadata) ? body.metadata : null,
  };
  ctx.state.batches.set(id, batch);
  return jsonReply(200, batch);
}

function batchCancel(ctx: Ctx, id: string): Reply {
  const batch = ctx.state.batches.get(id);
  if (batch === undefined) return notFoundReply('Batch', id);
  Object.assign(batch, { status: 'cancelling', cancelling_at: nowSec() });
  return jsonReply(200, batch);
}

function storedReply(map: Map<string, Json>, what: string, id: string): Reply {
  const value = map.get(id);
  return value === undefined ? notFoundReply(what, id) : jsonReply(200, value);
}

function responseMessage(id: string, text: string, status: string): Json {
  return {
    type: 'message',
    id,
    status,
    role: 'assistant',
    content: status === 'completed' ? [{ type: 'output_text', text, annotations: [], logprobs: [] }] : [],
  };
}

function responseObject(head: Json, output: Json[], usage: Json | null, status: string): Json {
  return {
    ...head,
    object: 'response',
    status,
    error: null,
    incomplete_details: null,
    instructions: null,
    max_output_tokens: null,
    output,
    parallel_tool_calls: true,
    previous_response_id: null,
    reasoning: { effort: null, summary: null },
    store: true,
    temperature: 1,
    text: { format: { type: 'text' } },
    tool_choice: 'auto',
    tools: [],
    top_p: 1,
    truncation: 'disabled',
    usage,
    user: null,
    metadata: {},
  };
}

function responsesCreate(ctx: Ctx, body: Json): Reply {
  const text = ctx.stream.content;
  const input = promptTokens(textChars(body.input) + textChars(body.instructions));
  const output = wordCount(text);
  const usage = {
    input_tokens: input,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: input + output,
  };
  const head = {
    id: nextId(ctx.state, 'resp_mock'),
    created_at: nowSec(),
    model: str(body.model, 'gpt-4o-mini'),
  };
  const messageId = nextId(ctx.state, 'msg_mock');
  const done = responseObject(head, [responseMessage(messageId, text, 'completed')], usage, 'completed');
  ctx.state.responses.set(String(head.id), done);
  if (body.stream !== true) return jsonReply(200, done);
  return sseReply(responseStreamEvents(ctx, responseObject(head, [], null, 'in_progress'), done, messageId));
}

function responseStreamEvents(ctx: Ctx, started: Json, done: Json, itemId: string): string[] {
  let sequence = 0;
  const event = (type: string, payload: Json): string =>
    sseEvent(type, { type, sequence_number: sequence++, ...payload });
  const text = ctx.stream.content;
  const where = { item_id: itemId, output_index: 0, content_index: 0 };
  const part = { type: 'output_text', text, annotations: [], logprobs: [] };
  return [
    event('response.created', { response: started }),
    event('response.in_progress', { response: started }),
    event('response.output_item.added', {
      output_index: 0,
      item: responseMessage(itemId, '', 'in_progress'),
    }),
    event('response.content_part.added', { ...where, part: { ...part, text: '' } }),
    ...splitPieces(text, ctx.stream.chunks).map((delta) =>
      event('response.output_text.delta', { ...where, delta, logprobs: [] }),
    ),
    event('response.output_text.done', { ...where, text, logprobs: [] }),
    event('response.content_part.done', { ...where, part }),
    event('response.output_item.done', { output_index: 0, item: responseMessage(itemId, text, 'completed') }),
    event('response.completed', { response: done }),
  ];
}

function echoReply(ctx: Ctx): Reply {
  return jsonReply(200, {
    echo: { method: ctx.method, path: ctx.path, query: ctx.query, bodyBytes: ctx.body.length },
  });
}

interface Route {
  method: string;
  pattern: RegExp;
  handler: Handler;
}

const param = (params: string[], i: number): string => decodeURIComponent(params[i] ?? '');

const ROUTES: Route[] = [
  { method: 'POST', pattern: /^\/v1\/chat\/completions$/, handler: withJson(chatCompletions) },
  { method: 'POST', pattern: /^\/v1\/completions$/, handler: withJson(completions) },
  { method: 'POST', pattern: /^\/v1\/embeddings$/, handler: withJson(embeddings) },
  { method: 'POST', pattern: /^\/v1\/moderations$/, handler: withJson(moderations) },
  { method: 'POST', pattern: /^\/v1\/images\/generations$/, handler: withJson(imagesGenerations) },
  { method: 'POST', pattern: /^\/v1\/audio\/transcriptions$/, handler: audioText('transcribed') },
  { method: 'POST', pattern: /^\/v1\/audio\/translations$/, handler: audioText('translated') },
  { method: 'POST', pattern: /^\/v1\/audio\/speech$/, handler: withJson(audioSpeech) },
  { method: 'GET', pattern: /^\/v1\/models$/, handler: () => listReply(MOCK_MODEL_IDS.map(modelObject)) },
  {
    method: 'GET',
    pattern: /^\/v1\/models\/([^/]+)$/,
    handler: (_c, p) => jsonReply(200, modelObject(param(p, 0))),
  },
  {
    method: 'GET',
    pattern: /^\/v1\/files$/,
    handler: (ctx) => listReply([...ctx.state.files.values()].map((file) => file.meta)),
  },
  { method: 'POST', pattern: /^\/v1\/files$/, handler: filesCreate },
  {
    method: 'GET',
    pattern: /^\/v1\/files\/([^/]+)$/,
    handler: (ctx, p) => fileById(ctx, param(p, 0), (file) => jsonReply(200, file.meta)),
  },
  {
    method: 'GET',
    pattern: /^\/v1\/files\/([^/]+)\/content$/,
    handler: (ctx, p) =>
      fileById(ctx, param(p, 0), (file) => ({
        type: 'body',
        status: 200,
        headers: { 'content-type': 'application/octet-stream' },
        body: file.content,
      })),
  },
  { method: 'DELETE', pattern: /^\/v1\/files\/([^/]+)$/, handler: (ctx, p) => fileDelete(ctx, param(p, 0)) },
  { method: 'GET', pattern: /^\/v1\/batches$/, handler: (ctx) => listReply([...ctx.state.batches.values()]) },
  { method: 'POST', pattern: /^\/v1\/batches$/, handler: withJson(batchesCreate) },
  {
    method: 'GET',
    pattern: /^\/v1\/batches\/([^/]+)$/,
    handler: (ctx, p) => storedReply(ctx.state.batches, 'Batch', param(p, 0)),
  },
  {
    method: 'POST',
    pattern: /^\/v1\/batches\/([^/]+)\/cancel$/,
    handler: (ctx, p) => batchCancel(ctx, param(p, 0)),
  },
  {
    method: 'GET',
    pattern: /^\/v1\/responses$/,
    handler: (ctx) => listReply([...ctx.state.responses.values()]),
  },
  { method: 'POST', pattern: /^\/v1\/responses$/, handler: withJson(responsesCreate) },
  {
    method: 'GET',
    pattern: /^\/v1\/responses\/([^/]+)$/,
    handler: (ctx, p) => storedReply(ctx.state.responses, 'Response', param(p, 0)),
  },
];

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
  const message = `Rate limit reached for ${requestModel(ctx)} in organization org-mock on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in ${wait}s.`;
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

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

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

function newState(): State {
  return { seq: 0, files: new Map(), batches: new Map(), responses: new Map() };
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
  let state = newState();
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
      state,
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
    reset: () => {
      requests.length = 0;
      keyBehaviours.clear();
      defaultBehaviour = initialDefault;
      stream = { ...initialStream };
      state = newState();
    },
    close: () => {
      closed ??= new Promise<void>((resolve, reject) => {
        closing = true;
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
        for (const socket of sockets) socket.destroy();
      });
      return closed;
    },
  };
}
