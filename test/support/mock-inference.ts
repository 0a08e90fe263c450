// Model endpoints of the mock OpenAI upstream: chat completions (and the stored ones, `store: true`),
// legacy completions, embeddings, moderations, images, audio and the model list (base models plus the
// organisation's own fine-tuned ones). Answers and usage are deterministic; see mock-http's token counting.
import {
  bytesReply,
  chatUsage,
  errorBody,
  formFile,
  includeUsage,
  inputChars,
  invalidRequest,
  isJson,
  jsonReply,
  metadataOf,
  missingParamReply,
  mockEmbedding,
  mockSpeechBytes,
  multipartErrorReply,
  nowSec,
  parseForm,
  promptTokens,
  splitPieces,
  sseData,
  sseReply,
  str,
  textChars,
  wordCount,
  deletedReply,
  type Json,
  type Reply,
} from './mock-http.js';
import { listPage } from './mock-lists.js';
import { param, queryOf, withJson, type Ctx, type Handler, type Route } from './mock-state.js';

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
const MODEL_CREATED = 1_700_000_000;

// ---------------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------------

function modelObject(id: string): Json {
  return { id, object: 'model', created: MODEL_CREATED, owned_by: 'system' };
}

function modelNotFound(model: string): Reply {
  return jsonReply(
    404,
    errorBody(
      `The model \`${model}\` does not exist or you do not have access to it.`,
      'invalid_request_error',
      'model_not_found',
    ),
  );
}

/**
 * A 404 when `model` is a fine-tuned model the request's organisation does not own, else null. Base model
 * names are not checked, so tests may use any name they like.
 */
export function checkModel(ctx: Ctx, model: string): Reply | null {
  return model.startsWith('ft:') && !ctx.org.models.has(model) ? modelNotFound(model) : null;
}

function modelsList(ctx: Ctx): Reply {
  const data = [...MOCK_MODEL_IDS.map(modelObject), ...ctx.org.models.values()];
  return jsonReply(200, { object: 'list', data, first_id: null, last_id: null, has_more: false });
}

function modelRetrieve(ctx: Ctx, id: string): Reply {
  if (!id.startsWith('ft:')) return jsonReply(200, modelObject(id));
  const model = ctx.org.models.get(id);
  return model === undefined ? modelNotFound(id) : jsonReply(200, model);
}

function modelDelete(ctx: Ctx, id: string): Reply {
  if (!id.startsWith('ft:')) {
    return jsonReply(
      403,
      errorBody(`You do not have permission to delete the model '${id}'.`, 'invalid_request_error', null),
    );
  }
  if (!ctx.org.models.delete(id)) return modelNotFound(id);
  return deletedReply(id, 'model');
}

// ---------------------------------------------------------------------------------------------------
// Chat completions
// ---------------------------------------------------------------------------------------------------

/** POST /v1/chat/completions. Also run directly by batches, hence the plain JSON signature. */
export function chatCompletions(ctx: Ctx, body: Json): Reply {
  const model = str(body.model, 'gpt-4o-mini');
  const refused = checkModel(ctx, model);
  if (refused !== null) return refused;
  const content = ctx.stream.content;
  const usage = chatUsage(promptTokens(textChars(body.messages)), wordCount(content));
  const id = ctx.world.nextId('chatcmpl-');
  const created = nowSec();
  const completion: Json = {
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
  };
  if (body.store === true) storeChat(ctx, body, completion);
  if (body.stream === true) return sseReply(chatStreamEvents(ctx, body, { id, created, model }, usage));
  return jsonReply(200, completion);
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

/** The request messages as GET /chat/completions/{id}/messages lists them. */
function storedMessages(completionId: string, messages: unknown): Json[] {
  if (!Array.isArray(messages)) return [];
  return messages.filter(isJson).map((message, i) => {
    const parts = Array.isArray(message.content) ? message.content : null;
    const content =
      parts === null
        ? typeof message.content === 'string'
          ? message.content
          : null
        : parts.map((part) => (isJson(part) && typeof part.text === 'string' ? part.text : '')).join('');
    return {
      id: `${completionId}-${i}`,
      role: str(message.role, 'user'),
      content,
      ...(typeof message.name === 'string' ? { name: message.name } : {}),
      content_parts: parts,
    };
  });
}

function storeChat(ctx: Ctx, body: Json, completion: Json): void {
  const id = String(completion.id);
  const stored = { ...completion, metadata: metadataOf(body.metadata) };
  ctx.org.chatCompletions.set(id, { completion: stored, messages: storedMessages(id, body.messages) });
}

function storedChatList(ctx: Ctx): Reply {
  const query = queryOf(ctx);
  const model = query.get('model');
  const wanted = [...query.entries()].flatMap(([name, value]) => {
    const match = /^metadata\[(.+)\]$/.exec(name);
    return match?.[1] === undefined ? [] : [[match[1], value] as const];
  });
  const chats = [...ctx.org.chatCompletions.values()]
    .map((chat) => chat.completion)
    .filter((completion) => model === null || completion.model === model)
    .filter((completion) => {
      const metadata = metadataOf(completion.metadata);
      return wanted.every(([name, value]) => metadata[name] === value);
    });
  return listPage(ctx, chats, { order: 'asc' });
}

function chatNotFound(id: string): Reply {
  return invalidRequest(404, `Chat completion with id '${id}' not found.`, null);
}

function storedChatGet(ctx: Ctx, id: string): Reply {
  const chat = ctx.org.chatCompletions.get(id);
  return chat === undefined ? chatNotFound(id) : jsonReply(200, chat.completion);
}

function storedChatUpdate(ctx: Ctx, body: Json, id: string): Reply {
  const chat = ctx.org.chatCompletions.get(id);
  if (chat === undefined) return chatNotFound(id);
  if (!isJson(body.metadata)) return missingParamReply('metadata');
  chat.completion.metadata = { ...body.metadata };
  return jsonReply(200, chat.completion);
}

function storedChatDelete(ctx: Ctx, id: string): Reply {
  if (!ctx.org.chatCompletions.delete(id)) return chatNotFound(id);
  return jsonReply(200, { object: 'chat.completion.deleted', id, deleted: true });
}

function storedChatMessages(ctx: Ctx, id: string): Reply {
  const chat = ctx.org.chatCompletions.get(id);
  return chat === undefined ? chatNotFound(id) : listPage(ctx, chat.messages, { order: 'asc' });
}

// ---------------------------------------------------------------------------------------------------
// Legacy completions, embeddings, moderations, images, audio
// ---------------------------------------------------------------------------------------------------

/** POST /v1/completions. Also run directly by batches. */
export function completions(ctx: Ctx, body: Json): Reply {
  const model = str(body.model, 'gpt-3.5-turbo-instruct');
  const refused = checkModel(ctx, model);
  if (refused !== null) return refused;
  const text = ctx.stream.content;
  const usage = chatUsage(promptTokens(inputChars(body.prompt)), wordCount(text));
  const head = { id: ctx.world.nextId('cmpl-'), object: 'text_completion', created: nowSec(), model };
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

/** POST /v1/embeddings. Also run directly by batches. */
export function embeddings(_ctx: Ctx, body: Json): Reply {
  const inputs = embeddingInputs(body.input);
  if (inputs.length === 0) return invalidRequest(400, "'input' is a required property", 'input');
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
    id: ctx.world.nextId('modr-'),
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

function audioText(verb: string): Handler {
  return async (ctx) => {
    const form = await parseForm(ctx.headers, ctx.body);
    const file = formFile(form, 'file');
    if (file === null) return multipartErrorReply('file');
    const text = `${verb} ${file.size} bytes of ${file.name}`;
    const format = form?.get('response_format');
    if (format === 'text' || format === 'srt' || format === 'vtt') {
      return bytesReply('text/plain', Buffer.from(text));
    }
    return jsonReply(200, { text });
  };
}

function audioSpeech(_ctx: Ctx, body: Json): Reply {
  // `x_mock_bytes` (tests only) asks for a longer clip, e.g. to test back-pressure.
  const size = typeof body.x_mock_bytes === 'number' ? body.x_mock_bytes : SPEECH_BYTES;
  return bytesReply('audio/mpeg', mockSpeechBytes(str(body.input, ''), size));
}

// ---------------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------------

const CHAT_ID = '/v1/chat/completions/([^/]+)';

export const INFERENCE_ROUTES: Route[] = [
  { method: 'POST', pattern: /^\/v1\/chat\/completions$/, handler: withJson(chatCompletions) },
  { method: 'GET', pattern: /^\/v1\/chat\/completions$/, handler: storedChatList },
  { method: 'GET', pattern: new RegExp(`^${CHAT_ID}$`), handler: (c, p) => storedChatGet(c, param(p, 0)) },
  {
    method: 'POST',
    pattern: new RegExp(`^${CHAT_ID}$`),
    handler: withJson((c, b, p) => storedChatUpdate(c, b, param(p, 0))),
  },
  {
    method: 'DELETE',
    pattern: new RegExp(`^${CHAT_ID}$`),
    handler: (c, p) => storedChatDelete(c, param(p, 0)),
  },
  {
    method: 'GET',
    pattern: new RegExp(`^${CHAT_ID}/messages$`),
    handler: (c, p) => storedChatMessages(c, param(p, 0)),
  },
  { method: 'POST', pattern: /^\/v1\/completions$/, handler: withJson(completions) },
  { method: 'POST', pattern: /^\/v1\/embeddings$/, handler: withJson(embeddings) },
  { method: 'POST', pattern: /^\/v1\/moderations$/, handler: withJson(moderations) },
  { method: 'POST', pattern: /^\/v1\/images\/generations$/, handler: withJson(imagesGenerations) },
  { method: 'POST', pattern: /^\/v1\/audio\/transcriptions$/, handler: audioText('transcribed') },
  { method: 'POST', pattern: /^\/v1\/audio\/translations$/, handler: audioText('translated') },
  { method: 'POST', pattern: /^\/v1\/audio\/speech$/, handler: withJson(audioSpeech) },
  { method: 'GET', pattern: /^\/v1\/models$/, handler: modelsList },
  { method: 'GET', pattern: /^\/v1\/models\/([^/]+)$/, handler: (c, p) => modelRetrieve(c, param(p, 0)) },
  { method: 'DELETE', pattern: /^\/v1\/models\/([^/]+)$/, handler: (c, p) => modelDelete(c, param(p, 0)) },
];
