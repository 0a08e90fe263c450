// Fine-tuning jobs, videos, containers and realtime client secrets of the mock OpenAI upstream. Jobs and
// videos finish later, on MockUpstream.advance() or after the configured delay; a finished job's
// fine-tuned model then shows in its organisation's /v1/models only, and only that organisation may use
// or delete it.
import {
  bytesReply,
  deletedReply,
  invalidRequest,
  invalidValueReply,
  isJson,
  jsonReply,
  missingParamReply,
  mockSpeechBytes,
  notFoundWithId,
  nowSec,
  parseForm,
  parseJsonObject,
  str,
  strOrNull,
  withIdNotFound,
  type Json,
  type Reply,
} from './mock-http.js';
import { addFile, missingFile } from './mock-files.js';
import { checkModel } from './mock-inference.js';
import { listPage } from './mock-lists.js';
import { param, queryOf, withJson, type Ctx, type Route, type StoredJob } from './mock-state.js';

// ---------------------------------------------------------------------------------------------------
// Fine-tuning
// ---------------------------------------------------------------------------------------------------

function withJob(ctx: Ctx, id: string, view: (stored: StoredJob) => Reply): Reply {
  const stored = ctx.org.fineTuningJobs.get(id);
  return stored === undefined ? notFoundWithId('fine-tuning job', id) : view(stored);
}

function addEvent(ctx: Ctx, stored: StoredJob, message: string): void {
  const event = { id: ctx.world.nextId('ftevent-'), object: 'fine_tuning.job.event', created_at: nowSec() };
  stored.events.push({ ...event, level: 'info', message, data: {}, type: 'message' });
}

/** The n_epochs a job asked for, in `hyperparameters` or `method.<type>.hyperparameters`; null for 'auto'. */
function requestedEpochs(body: Json): number | null {
  const method = isJson(body.method) ? body.method : {};
  const config = method[str(method.type, 'supervised')];
  const nested = isJson(config) ? config.hyperparameters : undefined;
  for (const source of [body.hyperparameters, nested]) {
    if (isJson(source) && typeof source.n_epochs === 'number') return source.n_epochs;
  }
  return null;
}

function jobCreate(ctx: Ctx, body: Json): Reply {
  if (typeof body.model !== 'string' || body.model === '') return missingParamReply('model');
  // Fine-tuning a fine-tuned model needs that model in the organisation.
  const refused = checkModel(ctx, body.model);
  if (refused !== null) return refused;
  if (typeof body.training_file !== 'string') return missingParamReply('training_file');
  for (const name of ['training_file', 'validation_file'] as const) {
    const id = body[name];
    if (id !== undefined && id !== null && (typeof id !== 'string' || !ctx.org.files.has(id))) {
      return invalidRequest(400, `invalid ${name}: ${String(id)}`, name);
    }
  }
  const training = ctx.org.files.get(body.training_file);
  const requested = requestedEpochs(body);
  // 'auto' resolves to 3 epochs when the job runs, as upstream does for small files.
  const epochs = requested ?? 3;
  const hyperparameters = {
    batch_size: 'auto',
    learning_rate_multiplier: 'auto',
    n_epochs: requested ?? 'auto',
  };
  const job: Json = {
    id: ctx.world.nextId('ftjob-'),
    object: 'fine_tuning.job',
    created_at: nowSec(),
    error: null,
    fine_tuned_model: null,
    finished_at: null,
    hyperparameters,
    model: body.model,
    organization_id: ctx.org.name,
    result_files: [],
    seed: typeof body.seed === 'number' ? body.seed : 42,
    status: 'validating_files',
    trained_tokens: null,
    training_file: body.training_file,
    validation_file: strOrNull(body.validation_file),
    estimated_finish: null,
    integrations: [],
    metadata: isJson(body.metadata) ? body.metadata : null,
    method: { type: 'supervised', supervised: { hyperparameters } },
    user_provided_suffix: strOrNull(body.suffix),
  };
  const stored: StoredJob = { job, events: [] };
  addEvent(ctx, stored, `Validating training file: ${body.training_file}`);
  addEvent(ctx, stored, `Created fine-tuning job: ${String(job.id)}`);
  ctx.org.fineTuningJobs.set(String(job.id), stored);
  const bytes = training?.content.length ?? 0;
  const run = { ...ctx };
  ctx.world.schedule({
    id: String(job.id),
    org: ctx.org.name,
    finish: () => finishJob(run, stored, bytes, epochs),
  });
  return jsonReply(200, job);
}

function finishJob(ctx: Ctx, stored: StoredJob, trainingBytes: number, epochs: number): void {
  const { job } = stored;
  const id = String(job.id);
  const suffix = strOrNull(job.user_provided_suffix) ?? '';
  const model = `ft:${String(job.model)}:${ctx.org.name}:${suffix}:${id.slice('ftjob-'.length)}`;
  const now = nowSec();
  const results = addFile(
    ctx,
    ctx.org,
    'step_metrics.csv',
    'fine-tune-results',
    Buffer.from('step,train_loss\n1,0.5\n'),
  );
  const hyperparameters = { batch_size: 1, learning_rate_multiplier: 2, n_epochs: epochs };
  addEvent(ctx, stored, 'Fine-tuning job started');
  Object.assign(job, {
    status: 'succeeded',
    finished_at: now,
    fine_tuned_model: model,
    trained_tokens: Math.ceil(trainingBytes / 4) * epochs,
    result_files: [results.id],
    hyperparameters,
    method: { type: 'supervised', supervised: { hyperparameters } },
  });
  ctx.org.models.set(model, { id: model, object: 'model', created: now, owned_by: ctx.org.name });
  addEvent(ctx, stored, `New fine-tuned model created: ${model}`);
  addEvent(ctx, stored, 'The job has successfully completed');
}

function jobCancel(ctx: Ctx, id: string): Reply {
  return withJob(ctx, id, (stored) => {
    if (!ctx.world.isPending(id)) {
      return invalidRequest(400, `Cannot cancel a job with status '${String(stored.job.status)}'.`);
    }
    ctx.world.unschedule(id);
    Object.assign(stored.job, { status: 'cancelled', finished_at: nowSec() });
    addEvent(ctx, stored, 'Fine-tuning job cancelled');
    return jsonReply(200, stored.job);
  });
}

// ---------------------------------------------------------------------------------------------------
// Containers, videos, realtime client secrets
// ---------------------------------------------------------------------------------------------------

function containerCreate(ctx: Ctx, body: Json): Reply {
  if (typeof body.name !== 'string' || body.name === '') return missingParamReply('name');
  const missing = missingFile(ctx, body.file_ids, 'file_ids');
  if (missing !== null) return missing;
  const created = nowSec();
  const container = {
    id: ctx.world.nextId('cntr_'),
    object: 'container',
    created_at: created,
    status: 'running',
    expires_after: isJson(body.expires_after)
      ? body.expires_after
      : { anchor: 'last_active_at', minutes: 20 },
    last_active_at: created,
    name: body.name,
    memory_limit: str(body.memory_limit, '1g'),
  };
  ctx.org.containers.set(container.id, container);
  return jsonReply(200, container);
}

/** The deterministic bytes GET /v1/videos/{id}/content returns for a variant of a finished video. */
export function mockVideoBytes(id: string, variant = 'video'): Buffer {
  return mockSpeechBytes(`video:${id}:${variant}`, 4096);
}

const VIDEO_VARIANTS: Readonly<Record<string, string>> = {
  video: 'video/mp4',
  thumbnail: 'image/webp',
  spritesheet: 'image/jpeg',
};

/** The create parameters, sent as multipart by the SDK and as JSON by hand. */
async function videoParams(ctx: Ctx): Promise<Json | null> {
  const form = await parseForm(ctx.headers, ctx.body);
  if (form === null) return parseJsonObject(ctx.body);
  return Object.fromEntries([...form.entries()].filter(([, value]) => typeof value === 'string'));
}

async function videoCreate(ctx: Ctx): Promise<Reply> {
  const body = await videoParams(ctx);
  if (body === null) return invalidRequest(400, 'Could not parse the request body.');
  if (typeof body.prompt !== 'string' || body.prompt === '') return missingParamReply('prompt');
  const seconds = String(body.seconds ?? '4');
  if (!['4', '8', '12'].includes(seconds)) return invalidValueReply('seconds', seconds, ['4', '8', '12']);
  const video: Json = {
    id: ctx.world.nextId('video_'),
    object: 'video',
    created_at: nowSec(),
    status: 'queued',
    model: str(body.model, 'sora-2'),
    progress: 0,
    prompt: body.prompt,
    seconds,
    size: str(body.size, '720x1280'),
    completed_at: null,
    expires_at: null,
    error: null,
    remixed_from_video_id: null,
  };
  ctx.org.videos.set(String(video.id), video);
  ctx.world.schedule({
    id: String(video.id),
    org: ctx.org.name,
    finish: () => {
      const now = nowSec();
      Object.assign(video, {
        status: 'completed',
        progress: 100,
        completed_at: now,
        expires_at: now + 86_400,
      });
    },
  });
  return jsonReply(200, video);
}

function withVideo(ctx: Ctx, id: string, view: (video: Json) => Reply): Reply {
  const video = ctx.org.videos.get(id);
  return video === undefined ? withIdNotFound('Video', id) : view(video);
}

function videoContent(ctx: Ctx, id: string): Reply {
  return withVideo(ctx, id, (video) => {
    const variant = queryOf(ctx).get('variant') ?? 'video';
    const type = VIDEO_VARIANTS[variant];
    if (type === undefined) return invalidValueReply('variant', variant, Object.keys(VIDEO_VARIANTS));
    if (video.status !== 'completed') {
      return invalidRequest(400, `Video '${id}' is not ready: its status is '${String(video.status)}'.`);
    }
    return bytesReply(type, mockVideoBytes(id, variant));
  });
}

function videoDelete(ctx: Ctx, id: string): Reply {
  return withVideo(ctx, id, (video) => {
    if (video.status !== 'completed' && video.status !== 'failed') {
      return invalidRequest(400, 'Only completed or failed videos can be deleted.');
    }
    ctx.org.videos.delete(id);
    return deletedReply(id, 'video.deleted');
  });
}

function clientSecretCreate(ctx: Ctx, body: Json): Reply {
  const requested = isJson(body.session) ? body.session : {};
  const expires =
    isJson(body.expires_after) && typeof body.expires_after.seconds === 'number'
      ? body.expires_after.seconds
      : 600;
  const transcription = requested.type === 'transcription';
  const session: Json = {
    type: transcription ? 'transcription' : 'realtime',
    object: transcription ? 'realtime.transcription_session' : 'realtime.session',
    id: ctx.world.nextId('sess_'),
    ...(transcription ? {} : { model: 'gpt-realtime', output_modalities: ['audio'], instructions: '' }),
    tools: [],
    tool_choice: 'auto',
    tracing: null,
    include: null,
    expires_at: 0,
    ...requested,
  };
  const secret = { value: ctx.world.nextId('ek_'), expires_at: nowSec() + expires, session };
  ctx.org.clientSecrets.set(secret.value, secret);
  return jsonReply(200, secret);
}

// ---------------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------------

const exact = (pattern: string): RegExp => new RegExp(`^${pattern}$`);
const JOB = '/v1/fine_tuning/jobs/([^/]+)';
const CONTAINER = '/v1/containers/([^/]+)';
const VIDEO = '/v1/videos/([^/]+)';
const ok = (value: Json): Reply => jsonReply(200, value);

export const JOB_ROUTES: Route[] = [
  { method: 'POST', pattern: /^\/v1\/fine_tuning\/jobs$/, handler: withJson(jobCreate) },
  {
    method: 'GET',
    pattern: /^\/v1\/fine_tuning\/jobs$/,
    handler: (c) =>
      listPage(
        c,
        [...c.org.fineTuningJobs.values()].map((s) => s.job),
        { orderable: false },
      ),
  },
  { method: 'GET', pattern: exact(JOB), handler: (c, p) => withJob(c, param(p, 0), (s) => ok(s.job)) },
  { method: 'POST', pattern: exact(`${JOB}/cancel`), handler: (c, p) => jobCancel(c, param(p, 0)) },
  {
    method: 'GET',
    pattern: exact(`${JOB}/events`),
    handler: (c, p) => withJob(c, param(p, 0), (s) => listPage(c, s.events, { orderable: false })),
  },
  { method: 'POST', pattern: /^\/v1\/containers$/, handler: withJson(containerCreate) },
  { method: 'GET', pattern: /^\/v1\/containers$/, handler: (c) => listPage(c, c.org.containers.values()) },
  {
    method: 'GET',
    pattern: exact(CONTAINER),
    handler: (c, p) => {
      const container = c.org.containers.get(param(p, 0));
      return container === undefined ? withIdNotFound('Container', param(p, 0)) : ok(container);
    },
  },
  {
    method: 'DELETE',
    pattern: exact(CONTAINER),
    handler: (c, p) =>
      c.org.containers.delete(param(p, 0))
        ? deletedReply(param(p, 0), 'container.deleted')
        : withIdNotFound('Container', param(p, 0)),
  },
  { method: 'POST', pattern: /^\/v1\/videos$/, handler: videoCreate },
  { method: 'GET', pattern: /^\/v1\/videos$/, handler: (c) => listPage(c, c.org.videos.values()) },
  { method: 'GET', pattern: exact(VIDEO), handler: (c, p) => withVideo(c, param(p, 0), ok) },
  { method: 'DELETE', pattern: exact(VIDEO), handler: (c, p) => videoDelete(c, param(p, 0)) },
  { method: 'GET', pattern: exact(`${VIDEO}/content`), handler: (c, p) => videoContent(c, param(p, 0)) },
  { method: 'POST', pattern: /^\/v1\/realtime\/client_secrets$/, handler: withJson(clientSecretCreate) },
];
