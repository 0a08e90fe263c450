// Files, Uploads and Batches of the mock OpenAI upstream. A batch runs on MockUpstream.advance() (or after
// the configured delay): each JSONL line is answered by the mock's own handler for its url, with the same
// usage as a direct call, into an output file and an error file of purpose `batch_output`, as upstream does.
import {
  bytesReply,
  deletedReply,
  formFile,
  invalidRequest,
  invalidValueReply,
  isJson,
  jsonReply,
  metadataOf,
  missingParamReply,
  multipartErrorReply,
  noSuchReply,
  notFoundWithId,
  nowSec,
  parseForm,
  parseJsonObject,
  str,
  type Json,
  type Reply,
} from './mock-http.js';
import { chatCompletions, completions, embeddings } from './mock-inference.js';
import { listPage } from './mock-lists.js';
import { responsesCreate } from './mock-responses.js';
import {
  param,
  queryOf,
  withJson,
  type Ctx,
  type OrgState,
  type Route,
  type StoredFile,
  type StoredUpload,
} from './mock-state.js';

const FILE_PURPOSES = ['assistants', 'batch', 'fine-tune', 'vision', 'user_data', 'evals'] as const;

// ---------------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------------

/** Stores a file in `org` (for uploads, batch results and fine-tuning results as well as POST /files). */
export function addFile(ctx: Ctx, org: OrgState, filename: string, purpose: string, content: Buffer): Json {
  const meta: Json = {
    id: ctx.world.nextId('file-'),
    object: 'file',
    bytes: content.length,
    created_at: nowSec(),
    filename,
    purpose,
    status: 'processed',
    expires_at: null,
    status_details: null,
  };
  org.files.set(String(meta.id), { meta, content });
  return meta;
}

async function filesCreate(ctx: Ctx): Promise<Reply> {
  const form = await parseForm(ctx.headers, ctx.body);
  const file = formFile(form, 'file');
  if (file === null) return multipartErrorReply('file');
  // A missing purpose is accepted (as `user_data`) because older tests upload without one.
  const purpose = form?.get('purpose') ?? 'user_data';
  if (typeof purpose !== 'string' || !(FILE_PURPOSES as readonly string[]).includes(purpose)) {
    return invalidValueReply('purpose', purpose, FILE_PURPOSES);
  }
  const content = Buffer.from(await file.arrayBuffer());
  return jsonReply(200, addFile(ctx, ctx.org, file.name, purpose, content));
}

/** The error for the first id in `ids` that is not a file of the organisation, else null. */
export function missingFile(ctx: Ctx, ids: unknown, param: string): Reply | null {
  if (!Array.isArray(ids)) return null;
  for (const id of ids) {
    if (typeof id !== 'string' || !ctx.org.files.has(id)) return noSuchReply('File', String(id), param);
  }
  return null;
}

function withFile(ctx: Ctx, id: string, view: (file: StoredFile) => Reply): Reply {
  const file = ctx.org.files.get(id);
  return file === undefined ? noSuchReply('File', id) : view(file);
}

function filesList(ctx: Ctx): Reply {
  const purpose = queryOf(ctx).get('purpose');
  const files = [...ctx.org.files.values()]
    .map((file) => file.meta)
    .filter((meta) => purpose === null || meta.purpose === purpose);
  return listPage(ctx, files, { defaultLimit: 10_000, maxLimit: 10_000 });
}

function fileDelete(ctx: Ctx, id: string): Reply {
  return ctx.org.files.delete(id) ? deletedReply(id, 'file') : noSuchReply('File', id);
}

// ---------------------------------------------------------------------------------------------------
// Uploads
// ---------------------------------------------------------------------------------------------------

function uploadsCreate(ctx: Ctx, body: Json): Reply {
  for (const name of ['filename', 'purpose', 'mime_type'] as const) {
    if (typeof body[name] !== 'string' || body[name] === '') return missingParamReply(name);
  }
  if (typeof body.bytes !== 'number' || !Number.isInteger(body.bytes) || body.bytes < 0) {
    return missingParamReply('bytes');
  }
  if (!(FILE_PURPOSES as readonly unknown[]).includes(body.purpose)) {
    return invalidValueReply('purpose', body.purpose, FILE_PURPOSES);
  }
  const created = nowSec();
  const meta: Json = {
    id: ctx.world.nextId('upload_'),
    object: 'upload',
    bytes: body.bytes,
    created_at: created,
    expires_at: created + 3600,
    filename: body.filename,
    purpose: body.purpose,
    status: 'pending',
    file: null,
  };
  ctx.org.uploads.set(String(meta.id), { meta, parts: new Map() });
  return jsonReply(200, meta);
}

/** The upload if it exists in the organisation and is still pending, else upstream's error. */
function pendingUpload(ctx: Ctx, id: string): StoredUpload | Reply {
  const upload = ctx.org.uploads.get(id);
  if (upload === undefined) return noSuchReply('Upload', id);
  if (upload.meta.status !== 'pending') {
    return invalidRequest(400, `Upload ${id} is already ${String(upload.meta.status)}.`, null);
  }
  return upload;
}

async function uploadPart(ctx: Ctx, id: string): Promise<Reply> {
  const upload = pendingUpload(ctx, id);
  if ('type' in upload) return upload;
  const data = formFile(await parseForm(ctx.headers, ctx.body), 'data');
  if (data === null) return multipartErrorReply('data');
  const part = { id: ctx.world.nextId('part_'), object: 'upload.part', created_at: nowSec(), upload_id: id };
  upload.parts.set(part.id, Buffer.from(await data.arrayBuffer()));
  return jsonReply(200, part);
}

function uploadComplete(ctx: Ctx, body: Json, id: string): Reply {
  const upload = pendingUpload(ctx, id);
  if ('type' in upload) return upload;
  if (!Array.isArray(body.part_ids)) return missingParamReply('part_ids');
  const chunks: Buffer[] = [];
  for (const partId of body.part_ids) {
    const part = typeof partId === 'string' ? upload.parts.get(partId) : undefined;
    if (part === undefined) return invalidRequest(400, `Invalid part ID: ${String(partId)}`, 'part_ids');
    chunks.push(part);
  }
  const content = Buffer.concat(chunks);
  if (content.length !== upload.meta.bytes) {
    return invalidRequest(
      400,
      `The number of bytes uploaded (${content.length}) does not match the number of bytes expected (${String(upload.meta.bytes)}).`,
      'bytes',
    );
  }
  const file = addFile(
    ctx,
    ctx.org,
    str(upload.meta.filename, 'upload'),
    str(upload.meta.purpose, ''),
    content,
  );
  Object.assign(upload.meta, { status: 'completed', file });
  upload.parts.clear();
  return jsonReply(200, upload.meta);
}

function uploadCancel(ctx: Ctx, id: string): Reply {
  const upload = pendingUpload(ctx, id);
  if ('type' in upload) return upload;
  upload.meta.status = 'cancelled';
  upload.parts.clear();
  return jsonReply(200, upload.meta);
}

// ---------------------------------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------------------------------

type LineHandler = (ctx: Ctx, body: Json) => Reply;

const BATCH_HANDLERS: Readonly<Record<string, LineHandler>> = {
  '/v1/chat/completions': chatCompletions,
  '/v1/responses': responsesCreate,
  '/v1/embeddings': embeddings,
  '/v1/completions': completions,
};

type BatchEnd = 'completed' | 'expired' | 'failed' | 'cancelled';

/** The input lines of each batch, read when it was created: deleting the input file later changes nothing. */
const batchInputs = new WeakMap<Json, string[]>();

interface Tally {
  output: string[];
  errors: string[];
  completed: number;
  input: number;
  outputTokens: number;
}

function firstModel(content: Buffer): string | null {
  for (const line of content.toString('utf8').split('\n')) {
    const body = parseJsonObject(Buffer.from(line))?.body;
    if (isJson(body) && typeof body.model === 'string') return body.model;
  }
  return null;
}

function batchesCreate(ctx: Ctx, body: Json): Reply {
  for (const name of ['input_file_id', 'endpoint', 'completion_window'] as const) {
    if (typeof body[name] !== 'string' || body[name] === '') return missingParamReply(name);
  }
  const endpoint = String(body.endpoint);
  if (!(endpoint in BATCH_HANDLERS)) {
    return invalidValueReply('endpoint', endpoint, Object.keys(BATCH_HANDLERS));
  }
  if (body.completion_window !== '24h') {
    return invalidValueReply('completion_window', body.completion_window, ['24h']);
  }
  const input = ctx.org.files.get(String(body.input_file_id));
  if (input === undefined) return noSuchReply('File', String(body.input_file_id), 'input_file_id');
  if (input.meta.purpose !== 'batch') {
    return invalidRequest(400, "The input file must be uploaded with purpose 'batch'.", 'input_file_id');
  }
  const created = nowSec();
  const batch: Json = {
    id: ctx.world.nextId('batch_'),
    object: 'batch',
    endpoint,
    model: firstModel(input.content),
    errors: null,
    input_file_id: body.input_file_id,
    completion_window: '24h',
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
    usage: batchUsage(0, 0),
    metadata: isJson(body.metadata) ? metadataOf(body.metadata) : null,
  };
  ctx.org.batches.set(String(batch.id), batch);
  const lines = input.content
    .toString('utf8')
    .split('\n')
    .filter((line) => line.trim() !== '');
  batchInputs.set(batch, lines);
  const run = { ...ctx };
  ctx.world.schedule({
    id: String(batch.id),
    org: ctx.org.name,
    finish: ({ batches }) => finishBatch(run, batch, lines, batches),
  });
  return jsonReply(200, batch);
}

function batchUsage(input: number, output: number): Json {
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: input + output,
  };
}

function lineError(ctx: Ctx, customId: unknown, code: string, message: string): string {
  const id = ctx.world.nextId('batch_req_');
  return JSON.stringify({ id, custom_id: customId ?? null, response: null, error: { code, message } });
}

function addUsage(tally: Tally, usage: unknown): void {
  if (!isJson(usage)) return;
  const count = (value: unknown): number => (typeof value === 'number' ? value : 0);
  tally.input += count(usage.prompt_tokens) + count(usage.input_tokens);
  tally.outputTokens += count(usage.completion_tokens) + count(usage.output_tokens);
}

function runLine(ctx: Ctx, endpoint: string, line: string, tally: Tally): void {
  const request = parseJsonObject(Buffer.from(line));
  if (request === null) {
    tally.errors.push(lineError(ctx, null, 'invalid_json_line', 'This line is not parseable as valid JSON.'));
    return;
  }
  const url = request.url;
  const handler = typeof url === 'string' ? BATCH_HANDLERS[url] : undefined;
  if (handler === undefined || url !== endpoint || request.method !== 'POST' || !isJson(request.body)) {
    const message = `The URL '${String(url)}' (method ${String(request.method)}) does not match the batch endpoint POST ${endpoint}.`;
    tally.errors.push(lineError(ctx, request.custom_id, 'invalid_url', message));
    return;
  }
  const body = Buffer.from(JSON.stringify(request.body));
  const reply = handler({ ...ctx, method: 'POST', path: endpoint, query: '', body }, request.body);
  if (reply.type !== 'body') {
    tally.errors.push(
      lineError(ctx, request.custom_id, 'invalid_request', 'Streaming is not supported in batches.'),
    );
    return;
  }
  const answer = parseJsonObject(reply.body) ?? {};
  const entry = JSON.stringify({
    id: ctx.world.nextId('batch_req_'),
    custom_id: request.custom_id ?? null,
    response: { status_code: reply.status, request_id: ctx.world.nextId('req_'), body: answer },
    error: null,
  });
  // Like upstream, answers that are errors (4xx) go to the error file, with their status and body.
  if (reply.status !== 200) {
    tally.errors.push(entry);
    return;
  }
  tally.output.push(entry);
  tally.completed += 1;
  addUsage(tally, answer.usage);
}

function writeResults(ctx: Ctx, batch: Json, tally: Tally): void {
  const id = String(batch.id);
  const file = (lines: string[], suffix: string): string | null =>
    lines.length === 0
      ? null
      : String(
          addFile(ctx, ctx.org, `${id}_${suffix}.jsonl`, 'batch_output', Buffer.from(lines.join('\n') + '\n'))
            .id,
        );
  batch.output_file_id = file(tally.output, 'output');
  batch.error_file_id = file(tally.errors, 'error');
}

const UNFINISHED: Readonly<Record<'expired' | 'cancelled', [code: string, message: string]>> = {
  expired: ['batch_expired', 'This request could not be executed before the completion window expired.'],
  cancelled: ['batch_cancelled', 'This request was not executed because the batch was cancelled.'],
};

function finishBatch(ctx: Ctx, batch: Json, lines: string[], outcome: BatchEnd): void {
  const now = nowSec();
  if (outcome === 'failed') {
    const error = {
      code: 'batch_failed',
      message: 'The batch failed (MockUpstream.advance).',
      param: null,
      line: null,
    };
    Object.assign(batch, { status: 'failed', failed_at: now, errors: { object: 'list', data: [error] } });
    return;
  }
  batch.in_progress_at ??= now;
  const tally: Tally = { output: [], errors: [], completed: 0, input: 0, outputTokens: 0 };
  // A partial batch (expired, cancelled) has answered the first half of its lines, rounded up.
  const done = outcome === 'completed' ? lines.length : Math.ceil(lines.length / 2);
  const endpoint = String(batch.endpoint);
  for (const line of lines.slice(0, done)) runLine(ctx, endpoint, line, tally);
  if (outcome !== 'completed') {
    const [code, message] = UNFINISHED[outcome];
    for (const line of lines.slice(done)) {
      tally.errors.push(lineError(ctx, parseJsonObject(Buffer.from(line))?.custom_id, code, message));
    }
  }
  writeResults(ctx, batch, tally);
  Object.assign(batch, {
    status: outcome,
    finalizing_at: now,
    [`${outcome}_at`]: now,
    request_counts: {
      total: lines.length,
      completed: tally.completed,
      failed: lines.length - tally.completed,
    },
    usage: batchUsage(tally.input, tally.outputTokens),
  });
}

function withBatch(ctx: Ctx, id: string, view: (batch: Json) => Reply): Reply {
  const batch = ctx.org.batches.get(id);
  return batch === undefined ? notFoundWithId('batch', id) : view(batch);
}

function batchCancel(ctx: Ctx, id: string): Reply {
  return withBatch(ctx, id, (batch) => {
    if (batch.status === 'cancelling') return jsonReply(200, batch);
    if (batch.status !== 'validating' && batch.status !== 'in_progress') {
      return invalidRequest(409, `Cannot cancel a batch with status '${String(batch.status)}'.`);
    }
    Object.assign(batch, { status: 'cancelling', cancelling_at: nowSec() });
    const lines = batchInputs.get(batch) ?? [];
    const run = { ...ctx };
    // Cancelling takes upstream a while too: the batch ends `cancelled` with the work done so far.
    ctx.world.schedule({ id, org: ctx.org.name, finish: () => finishBatch(run, batch, lines, 'cancelled') });
    return jsonReply(200, batch);
  });
}

// ---------------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------------

const exact = (pattern: string): RegExp => new RegExp(`^${pattern}$`);
const FILE = '/v1/files/([^/]+)';
const UPLOAD = '/v1/uploads/([^/]+)';
const BATCH = '/v1/batches/([^/]+)';

export const FILE_ROUTES: Route[] = [
  { method: 'GET', pattern: /^\/v1\/files$/, handler: filesList },
  { method: 'POST', pattern: /^\/v1\/files$/, handler: filesCreate },
  {
    method: 'GET',
    pattern: exact(FILE),
    handler: (c, p) => withFile(c, param(p, 0), (file) => jsonReply(200, file.meta)),
  },
  {
    method: 'GET',
    pattern: exact(`${FILE}/content`),
    handler: (c, p) =>
      withFile(c, param(p, 0), (file) => bytesReply('application/octet-stream', file.content)),
  },
  { method: 'DELETE', pattern: exact(FILE), handler: (c, p) => fileDelete(c, param(p, 0)) },
  { method: 'POST', pattern: /^\/v1\/uploads$/, handler: withJson(uploadsCreate) },
  { method: 'POST', pattern: exact(`${UPLOAD}/parts`), handler: (c, p) => uploadPart(c, param(p, 0)) },
  {
    method: 'POST',
    pattern: exact(`${UPLOAD}/complete`),
    handler: withJson((c, b, p) => uploadComplete(c, b, param(p, 0))),
  },
  { method: 'POST', pattern: exact(`${UPLOAD}/cancel`), handler: (c, p) => uploadCancel(c, param(p, 0)) },
  {
    method: 'GET',
    pattern: /^\/v1\/batches$/,
    handler: (ctx) => listPage(ctx, ctx.org.batches.values(), { orderable: false }),
  },
  { method: 'POST', pattern: /^\/v1\/batches$/, handler: withJson(batchesCreate) },
  {
    method: 'GET',
    pattern: exact(BATCH),
    handler: (c, p) => withBatch(c, param(p, 0), (batch) => jsonReply(200, batch)),
  },
  { method: 'POST', pattern: exact(`${BATCH}/cancel`), handler: (c, p) => batchCancel(c, param(p, 0)) },
];
