// Vector stores (with their files and file batches) and the Assistants API v2 (assistants, threads,
// messages) of the mock OpenAI upstream. Every object lives in the organisation of the key that created
// it; a reference to another organisation's object (a file id in a vector store, a vector store in an
// assistant's tool_resources…) is answered as if it did not exist, as upstream does.
import {
  deletedReply,
  headerValue,
  invalidRequest,
  invalidValueReply,
  isJson,
  jsonReply,
  metadataOf,
  missingParamReply,
  notFoundWithId,
  nowSec,
  str,
  stringArray,
  strOrNull,
  type Json,
  type Reply,
} from './mock-http.js';
import { missingFile } from './mock-files.js';
import { listPage } from './mock-lists.js';
import {
  param,
  queryOf,
  withJson,
  type Ctx,
  type Route,
  type StoredThread,
  type StoredVectorStore,
} from './mock-state.js';

const BEFORE = { before: true } as const;

// ---------------------------------------------------------------------------------------------------
// Vector stores
// ---------------------------------------------------------------------------------------------------

function withStore(ctx: Ctx, id: string, view: (store: StoredVectorStore) => Reply): Reply {
  const store = ctx.org.vectorStores.get(id);
  return store === undefined ? notFoundWithId('vector store', id) : view(store);
}

/** Adds the organisation's file `fileId` to `store`; processing is instant in the mock. */
function attachFile(ctx: Ctx, store: StoredVectorStore, fileId: string, attributes: unknown): Json {
  const file = ctx.org.files.get(fileId);
  const entry: Json = {
    id: fileId,
    object: 'vector_store.file',
    usage_bytes: file?.content.length ?? 0,
    created_at: nowSec(),
    vector_store_id: store.meta.id,
    status: 'completed',
    last_error: null,
    chunking_strategy: { type: 'static', static: { max_chunk_size_tokens: 800, chunk_overlap_tokens: 400 } },
    attributes: isJson(attributes) ? attributes : {},
  };
  store.files.set(fileId, entry);
  refreshStore(store);
  return entry;
}

function refreshStore(store: StoredVectorStore): void {
  const files = [...store.files.values()];
  store.meta.usage_bytes = files.reduce((sum, file) => sum + Number(file.usage_bytes), 0);
  store.meta.file_counts = {
    in_progress: 0,
    completed: files.length,
    failed: 0,
    cancelled: 0,
    total: files.length,
  };
  store.meta.last_active_at = nowSec();
}

function vectorStoreCreate(ctx: Ctx, body: Json): Reply {
  const missing = missingFile(ctx, body.file_ids, 'file_ids');
  if (missing !== null) return missing;
  const created = nowSec();
  const meta: Json = {
    id: ctx.world.nextId('vs_'),
    object: 'vector_store',
    created_at: created,
    name: str(body.name, ''),
    usage_bytes: 0,
    file_counts: {},
    status: 'completed',
    expires_after: isJson(body.expires_after) ? body.expires_after : null,
    expires_at: null,
    last_active_at: created,
    metadata: metadataOf(body.metadata),
  };
  const store: StoredVectorStore = { meta, files: new Map(), fileBatches: new Map() };
  refreshStore(store);
  for (const fileId of stringArray(body.file_ids)) attachFile(ctx, store, fileId, null);
  ctx.org.vectorStores.set(String(meta.id), store);
  return jsonReply(200, meta);
}

function vectorStoreUpdate(ctx: Ctx, body: Json, id: string): Reply {
  return withStore(ctx, id, (store) => {
    if (typeof body.name === 'string') store.meta.name = body.name;
    if (isJson(body.metadata)) store.meta.metadata = { ...body.metadata };
    if (isJson(body.expires_after)) store.meta.expires_after = body.expires_after;
    return jsonReply(200, store.meta);
  });
}

function vectorStoreDelete(ctx: Ctx, id: string): Reply {
  if (!ctx.org.vectorStores.delete(id)) return notFoundWithId('vector store', id);
  return deletedReply(id, 'vector_store.deleted');
}

function storeFileCreate(ctx: Ctx, body: Json, id: string): Reply {
  return withStore(ctx, id, (store) => {
    if (typeof body.file_id !== 'string') return missingParamReply('file_id');
    const missing = missingFile(ctx, [body.file_id], 'file_id');
    return missing ?? jsonReply(200, attachFile(ctx, store, body.file_id, body.attributes));
  });
}

function withStoreFile(ctx: Ctx, params: string[], view: (s: StoredVectorStore, file: Json) => Reply): Reply {
  return withStore(ctx, param(params, 0), (store) => {
    const fileId = param(params, 1);
    const file = store.files.get(fileId);
    if (file !== undefined) return view(store, file);
    return invalidRequest(
      404,
      `No file found with id '${fileId}' in vector store '${String(store.meta.id)}'.`,
    );
  });
}

function storeFilesList(ctx: Ctx, id: string): Reply {
  const status = queryOf(ctx).get('filter');
  return withStore(ctx, id, (store) => {
    const files = [...store.files.values()].filter((file) => status === null || file.status === status);
    return listPage(ctx, files, BEFORE);
  });
}

function fileBatchCreate(ctx: Ctx, body: Json, id: string): Reply {
  return withStore(ctx, id, (store) => {
    const entries = Array.isArray(body.files) ? body.files.filter(isJson) : [];
    const fileIds = [...stringArray(body.file_ids), ...entries.map((entry) => String(entry.file_id))];
    if (fileIds.length === 0) return missingParamReply('file_ids');
    const missing = missingFile(ctx, fileIds, 'file_ids');
    if (missing !== null) return missing;
    for (const fileId of fileIds) attachFile(ctx, store, fileId, body.attributes);
    const n = fileIds.length;
    const batch: Json = {
      id: ctx.world.nextId('vsfb_'),
      object: 'vector_store.files_batch',
      created_at: nowSec(),
      vector_store_id: id,
      status: 'completed',
      file_counts: { in_progress: 0, completed: n, failed: 0, cancelled: 0, total: n },
    };
    store.fileBatches.set(String(batch.id), batch);
    return jsonReply(200, batch);
  });
}

function fileBatchGet(ctx: Ctx, params: string[]): Reply {
  return withStore(ctx, param(params, 0), (store) => {
    const batch = store.fileBatches.get(param(params, 1));
    return batch === undefined ? notFoundWithId('file batch', param(params, 1)) : jsonReply(200, batch);
  });
}

function vectorStoreSearch(ctx: Ctx, body: Json, id: string): Reply {
  return withStore(ctx, id, () => {
    if (typeof body.query !== 'string' && !Array.isArray(body.query)) return missingParamReply('query');
    const query = Array.isArray(body.query) ? body.query : [body.query];
    // The mock indexes nothing: every search finds nothing, but only in a store the caller can see.
    const page = { object: 'vector_store.search_results.page', search_query: query, data: [] };
    return jsonReply(200, { ...page, has_more: false, next_page: null });
  });
}

// ---------------------------------------------------------------------------------------------------
// Assistants, threads, messages (Assistants API v2)
// ---------------------------------------------------------------------------------------------------

function betaRefusal(ctx: Ctx): Reply | null {
  if (headerValue(ctx.headers['openai-beta'])?.includes('assistants=v2')) return null;
  return invalidRequest(
    400,
    "You must provide the 'OpenAI-Beta' header to access the Assistants API. Please try again by setting the header 'OpenAI-Beta: assistants=v2'.",
    null,
    'invalid_beta',
  );
}

/** Upstream checks what `tool_resources` points at: files and vector stores of the same organisation. */
function badToolResources(ctx: Ctx, resources: unknown): Reply | null {
  if (!isJson(resources)) return null;
  const code = resources.code_interpreter;
  const missing = isJson(code) ? missingFile(ctx, code.file_ids, 'tool_resources') : null;
  if (missing !== null) return missing;
  const search = resources.file_search;
  for (const id of isJson(search) ? stringArray(search.vector_store_ids) : []) {
    if (!ctx.org.vectorStores.has(id)) return notFoundWithId('vector store', id, 'tool_resources');
  }
  return null;
}

const ASSISTANT_FIELDS = ['model', 'name', 'description', 'instructions', 'tools', 'tool_resources'] as const;
const ASSISTANT_TUNING = ['metadata', 'temperature', 'top_p', 'response_format', 'reasoning_effort'] as const;

function assistantCreate(ctx: Ctx, body: Json): Reply {
  if (typeof body.model !== 'string' || body.model === '') return missingParamReply('model');
  const refused = badToolResources(ctx, body.tool_resources);
  if (refused !== null) return refused;
  const assistant: Json = {
    id: ctx.world.nextId('asst_'),
    object: 'assistant',
    created_at: nowSec(),
    name: strOrNull(body.name),
    description: strOrNull(body.description),
    model: body.model,
    instructions: strOrNull(body.instructions),
    tools: Array.isArray(body.tools) ? body.tools : [],
    tool_resources: isJson(body.tool_resources) ? body.tool_resources : {},
    metadata: metadataOf(body.metadata),
    temperature: typeof body.temperature === 'number' ? body.temperature : 1,
    top_p: typeof body.top_p === 'number' ? body.top_p : 1,
    reasoning_effort: body.reasoning_effort ?? null,
    response_format: body.response_format ?? 'auto',
  };
  ctx.org.assistants.set(String(assistant.id), assistant);
  return jsonReply(200, assistant);
}

function assistantUpdate(ctx: Ctx, body: Json, id: string): Reply {
  const assistant = ctx.org.assistants.get(id);
  if (assistant === undefined) return notFoundWithId('assistant', id);
  const refused = badToolResources(ctx, body.tool_resources);
  if (refused !== null) return refused;
  for (const name of [...ASSISTANT_FIELDS, ...ASSISTANT_TUNING]) {
    if (body[name] !== undefined) assistant[name] = body[name];
  }
  return jsonReply(200, assistant);
}

function assistantDelete(ctx: Ctx, id: string): Reply {
  if (!ctx.org.assistants.delete(id)) return notFoundWithId('assistant', id);
  return deletedReply(id, 'assistant.deleted');
}

function messageContent(content: unknown): Json[] {
  if (typeof content === 'string') return [{ type: 'text', text: { value: content, annotations: [] } }];
  if (!Array.isArray(content)) return [];
  return content
    .filter(isJson)
    .map((part) =>
      part.type === 'text' && typeof part.text === 'string'
        ? { type: 'text', text: { value: part.text, annotations: [] } }
        : part,
    );
}

/** A thread message from its create parameters, or upstream's error for bad ones. */
function newMessage(ctx: Ctx, threadId: string, body: Json): Json | Reply {
  if (body.role !== 'user' && body.role !== 'assistant') {
    return body.role === undefined
      ? missingParamReply('role')
      : invalidValueReply('role', body.role, ['user', 'assistant']);
  }
  if (body.content === undefined) return missingParamReply('content');
  const attachments = Array.isArray(body.attachments) ? body.attachments.filter(isJson) : [];
  const missing = missingFile(
    ctx,
    attachments.map((item) => item.file_id),
    'attachments',
  );
  if (missing !== null) return missing;
  const created = nowSec();
  return {
    id: ctx.world.nextId('msg_'),
    object: 'thread.message',
    created_at: created,
    assistant_id: null,
    thread_id: threadId,
    run_id: null,
    role: body.role,
    content: messageContent(body.content),
    attachments,
    metadata: metadataOf(body.metadata),
    status: 'completed',
    incomplete_details: null,
    completed_at: created,
    incomplete_at: null,
  };
}

function withThread(ctx: Ctx, id: string, view: (thread: StoredThread) => Reply): Reply {
  const thread = ctx.org.threads.get(id);
  return thread === undefined ? notFoundWithId('thread', id) : view(thread);
}

function threadCreate(ctx: Ctx, body: Json): Reply {
  const refused = badToolResources(ctx, body.tool_resources);
  if (refused !== null) return refused;
  const meta: Json = {
    id: ctx.world.nextId('thread_'),
    object: 'thread',
    created_at: nowSec(),
    metadata: metadataOf(body.metadata),
    tool_resources: isJson(body.tool_resources) ? body.tool_resources : {},
  };
  const thread: StoredThread = { meta, messages: new Map() };
  for (const params of Array.isArray(body.messages) ? body.messages.filter(isJson) : []) {
    const message = newMessage(ctx, String(meta.id), params);
    if (isReply(message)) return message;
    thread.messages.set(String(message.id), message);
  }
  ctx.org.threads.set(String(meta.id), thread);
  return jsonReply(200, meta);
}

function threadUpdate(ctx: Ctx, body: Json, id: string): Reply {
  return withThread(ctx, id, (thread) => {
    const refused = badToolResources(ctx, body.tool_resources);
    if (refused !== null) return refused;
    if (isJson(body.metadata)) thread.meta.metadata = { ...body.metadata };
    if (isJson(body.tool_resources)) thread.meta.tool_resources = body.tool_resources;
    return jsonReply(200, thread.meta);
  });
}

function threadDelete(ctx: Ctx, id: string): Reply {
  if (!ctx.org.threads.delete(id)) return notFoundWithId('thread', id);
  return deletedReply(id, 'thread.deleted');
}

function messageCreate(ctx: Ctx, body: Json, threadId: string): Reply {
  return withThread(ctx, threadId, (thread) => {
    const message = newMessage(ctx, threadId, body);
    if (isReply(message)) return message;
    thread.messages.set(String(message.id), message);
    return jsonReply(200, message);
  });
}

function isReply(value: Json | Reply): value is Reply {
  return (value.type === 'body' || value.type === 'sse') && typeof value.status === 'number';
}

function messageGet(ctx: Ctx, params: string[]): Reply {
  return withThread(ctx, param(params, 0), (thread) => {
    const message = thread.messages.get(param(params, 1));
    return message === undefined ? notFoundWithId('message', param(params, 1)) : jsonReply(200, message);
  });
}

/** Assistants API routes answer only with the v2 beta header, as upstream does. */
function beta(handler: Route['handler']): Route['handler'] {
  return (ctx, params) => betaRefusal(ctx) ?? handler(ctx, params);
}

// ---------------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------------

const exact = (pattern: string): RegExp => new RegExp(`^${pattern}$`);
const STORE = '/v1/vector_stores/([^/]+)';
const ASSISTANT = '/v1/assistants/([^/]+)';
const THREAD = '/v1/threads/([^/]+)';
const ok = (value: Json): Reply => jsonReply(200, value);

export const OBJECT_ROUTES: Route[] = [
  { method: 'POST', pattern: /^\/v1\/vector_stores$/, handler: withJson(vectorStoreCreate) },
  {
    method: 'GET',
    pattern: /^\/v1\/vector_stores$/,
    handler: (c) =>
      listPage(
        c,
        [...c.org.vectorStores.values()].map((store) => store.meta),
        BEFORE,
      ),
  },
  { method: 'GET', pattern: exact(STORE), handler: (c, p) => withStore(c, param(p, 0), (s) => ok(s.meta)) },
  {
    method: 'POST',
    pattern: exact(STORE),
    handler: withJson((c, b, p) => vectorStoreUpdate(c, b, param(p, 0))),
  },
  { method: 'DELETE', pattern: exact(STORE), handler: (c, p) => vectorStoreDelete(c, param(p, 0)) },
  {
    method: 'POST',
    pattern: exact(`${STORE}/files`),
    handler: withJson((c, b, p) => storeFileCreate(c, b, param(p, 0))),
  },
  { method: 'GET', pattern: exact(`${STORE}/files`), handler: (c, p) => storeFilesList(c, param(p, 0)) },
  {
    method: 'GET',
    pattern: exact(`${STORE}/files/([^/]+)`),
    handler: (c, p) => withStoreFile(c, p, (_s, f) => ok(f)),
  },
  {
    method: 'DELETE',
    pattern: exact(`${STORE}/files/([^/]+)`),
    handler: (c, p) =>
      withStoreFile(c, p, (store, file) => {
        store.files.delete(String(file.id));
        refreshStore(store);
        return deletedReply(String(file.id), 'vector_store.file.deleted');
      }),
  },
  {
    method: 'POST',
    pattern: exact(`${STORE}/file_batches`),
    handler: withJson((c, b, p) => fileBatchCreate(c, b, param(p, 0))),
  },
  { method: 'GET', pattern: exact(`${STORE}/file_batches/([^/]+)`), handler: fileBatchGet },
  {
    method: 'POST',
    pattern: exact(`${STORE}/search`),
    handler: withJson((c, b, p) => vectorStoreSearch(c, b, param(p, 0))),
  },
  { method: 'POST', pattern: /^\/v1\/assistants$/, handler: beta(withJson(assistantCreate)) },
  {
    method: 'GET',
    pattern: /^\/v1\/assistants$/,
    handler: beta((c) => listPage(c, c.org.assistants.values(), BEFORE)),
  },
  {
    method: 'GET',
    pattern: exact(ASSISTANT),
    handler: beta((c, p) => {
      const assistant = c.org.assistants.get(param(p, 0));
      return assistant === undefined ? notFoundWithId('assistant', param(p, 0)) : ok(assistant);
    }),
  },
  {
    method: 'POST',
    pattern: exact(ASSISTANT),
    handler: beta(withJson((c, b, p) => assistantUpdate(c, b, param(p, 0)))),
  },
  { method: 'DELETE', pattern: exact(ASSISTANT), handler: beta((c, p) => assistantDelete(c, param(p, 0))) },
  { method: 'POST', pattern: /^\/v1\/threads$/, handler: beta(withJson(threadCreate)) },
  {
    method: 'GET',
    pattern: exact(THREAD),
    handler: beta((c, p) => withThread(c, param(p, 0), (t) => ok(t.meta))),
  },
  {
    method: 'POST',
    pattern: exact(THREAD),
    handler: beta(withJson((c, b, p) => threadUpdate(c, b, param(p, 0)))),
  },
  { method: 'DELETE', pattern: exact(THREAD), handler: beta((c, p) => threadDelete(c, param(p, 0))) },
  {
    method: 'POST',
    pattern: exact(`${THREAD}/messages`),
    handler: beta(withJson((c, b, p) => messageCreate(c, b, param(p, 0)))),
  },
  {
    method: 'GET',
    pattern: exact(`${THREAD}/messages`),
    handler: beta((c, p) => withThread(c, param(p, 0), (t) => listPage(c, t.messages.values(), BEFORE))),
  },
  { method: 'GET', pattern: exact(`${THREAD}/messages/([^/]+)`), handler: beta(messageGet) },
];
