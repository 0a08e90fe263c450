// The Responses API of the mock OpenAI upstream and the Conversations it can write to: stored responses
// (`store`, `previous_response_id`, `conversation`), background responses that finish on
// MockUpstream.advance(), retrieval, deletion, cancellation, input items and input token counts.
// A follow-up is billed for its context as upstream does: input tokens count the text of the previous
// response chain or of the conversation's items, ~4 characters a token (see mock-http).
import {
  deletedReply,
  invalidRequest,
  isJson,
  jsonReply,
  metadataOf,
  missingParamReply,
  nowSec,
  promptTokens,
  splitPieces,
  sseEvent,
  sseReply,
  str,
  textChars,
  withIdNotFound,
  wordCount,
  type Json,
  type Reply,
} from './mock-http.js';
import { checkModel } from './mock-inference.js';
import { listBody, listPage } from './mock-lists.js';
import {
  param,
  withJson,
  type Ctx,
  type Route,
  type StoredConversation,
  type StoredResponse,
} from './mock-state.js';

// ---------------------------------------------------------------------------------------------------
// Items
// ---------------------------------------------------------------------------------------------------

function contentParts(role: string, content: unknown): unknown {
  if (typeof content !== 'string') return content;
  return [{ type: role === 'assistant' ? 'output_text' : 'input_text', text: content }];
}

/** Input as stored items: a string is one user message; every item gets an id as upstream assigns one. */
function inputItems(ctx: Ctx, input: unknown): Json[] {
  const list: unknown[] = typeof input === 'string' ? [{ role: 'user', content: input }] : [];
  if (Array.isArray(input)) list.push(...(input as unknown[]));
  return list.filter(isJson).map((item) => {
    const type = str(item.type, 'message');
    if (type !== 'message') return { id: ctx.world.nextId('item_'), ...item };
    const role = str(item.role, 'user');
    return {
      type: 'message',
      id: ctx.world.nextId('msg_'),
      status: 'completed',
      role,
      content: contentParts(role, item.content),
    };
  });
}

function outputMessage(id: string, text: string, status: string): Json {
  return {
    type: 'message',
    id,
    status,
    role: 'assistant',
    content: status === 'completed' ? [{ type: 'output_text', text, annotations: [], logprobs: [] }] : [],
  };
}

function appendItems(conversation: StoredConversation, items: Json[]): void {
  for (const item of items) {
    conversation.items.set(String(item.id), item);
    conversation.contextChars += textChars(item.content);
  }
}

// ---------------------------------------------------------------------------------------------------
// Creating responses
// ---------------------------------------------------------------------------------------------------

interface Context {
  previous: StoredResponse | null;
  conversation: StoredConversation | null;
}

function conversationId(value: unknown): string | null {
  if (typeof value === 'string') return value;
  return isJson(value) && typeof value.id === 'string' ? value.id : null;
}

/** The stored context a request names, or the error upstream answers when it names none it can see. */
function resolveContext(ctx: Ctx, body: Json): Context | Reply {
  const previousId = body.previous_response_id;
  const convId = conversationId(body.conversation);
  if (typeof previousId === 'string' && convId !== null) {
    return invalidRequest(
      400,
      "Mutually exclusive parameters: Ensure you are only providing one of: 'previous_response_id' or 'conversation'.",
      null,
      'mutually_exclusive_parameters',
    );
  }
  let previous: StoredResponse | null = null;
  if (typeof previousId === 'string') {
    previous = ctx.org.responses.get(previousId) ?? null;
    if (previous === null) {
      return invalidRequest(
        400,
        `Previous response with id '${previousId}' not found.`,
        'previous_response_id',
        'previous_response_not_found',
      );
    }
  }
  let conversation: StoredConversation | null = null;
  if (convId !== null) {
    conversation = ctx.org.conversations.get(convId) ?? null;
    if (conversation === null) return withIdNotFound('Conversation', convId, 'conversation');
  }
  return { previous, conversation };
}

function contextChars(context: Context): number {
  return context.previous?.contextChars ?? context.conversation?.contextChars ?? 0;
}

function inputTokens(body: Json, context: Context): number {
  return promptTokens(textChars(body.input) + textChars(body.instructions) + contextChars(context));
}

function responseObject(body: Json, head: Json, status: string, output: Json[], usage: Json | null): Json {
  return {
    ...head,
    object: 'response',
    status,
    background: body.background === true,
    completed_at: status === 'completed' ? nowSec() : null,
    error: null,
    incomplete_details: null,
    instructions: body.instructions ?? null,
    max_output_tokens: typeof body.max_output_tokens === 'number' ? body.max_output_tokens : null,
    output,
    parallel_tool_calls: true,
    reasoning: { effort: null, summary: null },
    service_tier: 'default',
    store: body.store !== false,
    temperature: typeof body.temperature === 'number' ? body.temperature : 1,
    text: { format: { type: 'text' } },
    tool_choice: 'auto',
    tools: [],
    top_p: typeof body.top_p === 'number' ? body.top_p : 1,
    truncation: 'disabled',
    usage,
    user: null,
    metadata: metadataOf(body.metadata),
  };
}

/** POST /v1/responses. Also run directly by batches. */
export function responsesCreate(ctx: Ctx, body: Json): Reply {
  const model = str(body.model, 'gpt-4o-mini');
  const refused = checkModel(ctx, model);
  if (refused !== null) return refused;
  const context = resolveContext(ctx, body);
  if ('type' in context) return context;
  const store = body.store !== false;
  if (body.background === true && !store) {
    return invalidRequest(400, "Background mode requires 'store' to be true.", 'background');
  }
  const text = ctx.stream.content;
  const input = inputTokens(body, context);
  const outputTokens = wordCount(text);
  const usage = {
    input_tokens: input,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: outputTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: input + outputTokens,
  };
  const convId = conversationId(body.conversation);
  const head = {
    id: ctx.world.nextId('resp_'),
    created_at: nowSec(),
    model,
    previous_response_id: typeof body.previous_response_id === 'string' ? body.previous_response_id : null,
    conversation: convId === null ? null : { id: convId },
  };
  const items = inputItems(ctx, body.input);
  const messageId = ctx.world.nextId('msg_');
  const output = [outputMessage(messageId, text, 'completed')];
  const done = responseObject(body, head, 'completed', output, usage);
  const ownChars = textChars(items.map((item) => item.content)) + textChars(text);
  const stored: StoredResponse = {
    response: done,
    inputItems: items,
    contextChars: contextChars(context) + ownChars,
  };
  const finish = (): void => {
    if (context.conversation !== null) appendItems(context.conversation, [...items, ...output]);
  };
  if (store) ctx.org.responses.set(String(head.id), stored);
  // A streamed background response is streamed to the end at once: the mock has no resumable streams.
  if (body.background === true && body.stream !== true) {
    stored.response = responseObject(body, head, 'queued', [], null);
    ctx.world.schedule({
      id: String(head.id),
      org: ctx.org.name,
      finish: () => {
        stored.response = { ...done, completed_at: nowSec() };
        finish();
      },
    });
    return jsonReply(200, stored.response);
  }
  finish();
  if (body.stream !== true) return jsonReply(200, done);
  const started = responseObject(body, head, 'in_progress', [], null);
  return sseReply(responseStreamEvents(ctx, started, done, messageId));
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
    event('response.output_item.added', { output_index: 0, item: outputMessage(itemId, '', 'in_progress') }),
    event('response.content_part.added', { ...where, part: { ...part, text: '' } }),
    ...splitPieces(text, ctx.stream.chunks).map((delta) =>
      event('response.output_text.delta', { ...where, delta, logprobs: [] }),
    ),
    event('response.output_text.done', { ...where, text, logprobs: [] }),
    event('response.content_part.done', { ...where, part }),
    event('response.output_item.done', { output_index: 0, item: outputMessage(itemId, text, 'completed') }),
    event('response.completed', { response: done }),
  ];
}

// ---------------------------------------------------------------------------------------------------
// Stored responses
// ---------------------------------------------------------------------------------------------------

function withResponse(ctx: Ctx, id: string, view: (stored: StoredResponse) => Reply): Reply {
  const stored = ctx.org.responses.get(id);
  return stored === undefined ? withIdNotFound('Response', id) : view(stored);
}

function responseDelete(ctx: Ctx, id: string): Reply {
  if (!ctx.org.responses.delete(id)) return withIdNotFound('Response', id);
  ctx.world.unschedule(id);
  return deletedReply(id, 'response');
}

function responseCancel(ctx: Ctx, id: string): Reply {
  return withResponse(ctx, id, (stored) => {
    if (stored.response.background !== true) {
      return invalidRequest(400, 'Cannot cancel a synchronous response.');
    }
    // Cancelling twice, or after the end, answers the response as it is, as upstream does.
    if (ctx.world.isPending(id)) {
      ctx.world.unschedule(id);
      stored.response = { ...stored.response, status: 'cancelled' };
    }
    return jsonReply(200, stored.response);
  });
}

function inputTokensCount(ctx: Ctx, body: Json): Reply {
  const context = resolveContext(ctx, body);
  if ('type' in context) return context;
  return jsonReply(200, { object: 'response.input_tokens', input_tokens: inputTokens(body, context) });
}

// ---------------------------------------------------------------------------------------------------
// Conversations
// ---------------------------------------------------------------------------------------------------

function withConversation(ctx: Ctx, id: string, view: (conversation: StoredConversation) => Reply): Reply {
  const conversation = ctx.org.conversations.get(id);
  return conversation === undefined ? withIdNotFound('Conversation', id) : view(conversation);
}

function conversationCreate(ctx: Ctx, body: Json): Reply {
  const meta = {
    id: ctx.world.nextId('conv_'),
    object: 'conversation',
    created_at: nowSec(),
    metadata: metadataOf(body.metadata),
  };
  const conversation: StoredConversation = { meta, items: new Map(), contextChars: 0 };
  appendItems(conversation, inputItems(ctx, body.items));
  ctx.org.conversations.set(meta.id, conversation);
  return jsonReply(200, meta);
}

function conversationUpdate(ctx: Ctx, body: Json, id: string): Reply {
  return withConversation(ctx, id, (conversation) => {
    if (!isJson(body.metadata)) return missingParamReply('metadata');
    conversation.meta.metadata = { ...body.metadata };
    return jsonReply(200, conversation.meta);
  });
}

function conversationDelete(ctx: Ctx, id: string): Reply {
  // Upstream keeps the items of a deleted conversation; nothing can reach them any more, so they go too.
  if (!ctx.org.conversations.delete(id)) return withIdNotFound('Conversation', id);
  return deletedReply(id, 'conversation.deleted');
}

function itemsCreate(ctx: Ctx, body: Json, id: string): Reply {
  return withConversation(ctx, id, (conversation) => {
    if (!Array.isArray(body.items)) return missingParamReply('items');
    const items = inputItems(ctx, body.items);
    appendItems(conversation, items);
    return jsonReply(200, listBody(items));
  });
}

function withItem(ctx: Ctx, params: string[], view: (c: StoredConversation, item: Json) => Reply): Reply {
  return withConversation(ctx, param(params, 0), (conversation) => {
    const itemId = param(params, 1);
    const item = conversation.items.get(itemId);
    return item === undefined ? withIdNotFound('Item', itemId) : view(conversation, item);
  });
}

// ---------------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------------

const RESPONSE = '/v1/responses/([^/]+)';
const CONVERSATION = '/v1/conversations/([^/]+)';
const exact = (pattern: string): RegExp => new RegExp(`^${pattern}$`);

export const RESPONSE_ROUTES: Route[] = [
  {
    // Not in OpenAI's API; kept because tests used it to see what the mock stored.
    method: 'GET',
    pattern: /^\/v1\/responses$/,
    handler: (ctx) =>
      listPage(
        ctx,
        [...ctx.org.responses.values()].map((stored) => stored.response),
      ),
  },
  { method: 'POST', pattern: /^\/v1\/responses$/, handler: withJson(responsesCreate) },
  { method: 'POST', pattern: /^\/v1\/responses\/input_tokens$/, handler: withJson(inputTokensCount) },
  {
    method: 'GET',
    pattern: exact(RESPONSE),
    handler: (c, p) => withResponse(c, param(p, 0), (stored) => jsonReply(200, stored.response)),
  },
  { method: 'DELETE', pattern: exact(RESPONSE), handler: (c, p) => responseDelete(c, param(p, 0)) },
  { method: 'POST', pattern: exact(`${RESPONSE}/cancel`), handler: (c, p) => responseCancel(c, param(p, 0)) },
  {
    method: 'GET',
    pattern: exact(`${RESPONSE}/input_items`),
    handler: (c, p) => withResponse(c, param(p, 0), (stored) => listPage(c, stored.inputItems)),
  },
  { method: 'POST', pattern: /^\/v1\/conversations$/, handler: withJson(conversationCreate) },
  {
    method: 'GET',
    pattern: exact(CONVERSATION),
    handler: (c, p) => withConversation(c, param(p, 0), (conversation) => jsonReply(200, conversation.meta)),
  },
  {
    method: 'POST',
    pattern: exact(CONVERSATION),
    handler: withJson((c, b, p) => conversationUpdate(c, b, param(p, 0))),
  },
  { method: 'DELETE', pattern: exact(CONVERSATION), handler: (c, p) => conversationDelete(c, param(p, 0)) },
  {
    method: 'GET',
    pattern: exact(`${CONVERSATION}/items`),
    handler: (c, p) => withConversation(c, param(p, 0), (conv) => listPage(c, conv.items.values())),
  },
  {
    method: 'POST',
    pattern: exact(`${CONVERSATION}/items`),
    handler: withJson((c, b, p) => itemsCreate(c, b, param(p, 0))),
  },
  {
    method: 'GET',
    pattern: exact(`${CONVERSATION}/items/([^/]+)`),
    handler: (c, p) => withItem(c, p, (_conversation, item) => jsonReply(200, item)),
  },
  {
    method: 'DELETE',
    pattern: exact(`${CONVERSATION}/items/([^/]+)`),
    handler: (c, p) =>
      withItem(c, p, (conversation, item) => {
        conversation.items.delete(String(item.id));
        conversation.contextChars -= textChars(item.content);
        return jsonReply(200, conversation.meta);
      }),
  },
];
