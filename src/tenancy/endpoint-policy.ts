/**
 * THE endpoint table: every OpenAI endpoint family the gateway knows, each route with its billing
 * policy and what the gateway does besides forwarding (record the object it creates, forget the
 * one it deletes, answer a list from its own records, follow a batch). The docs page renders the
 * same table (test/unit/endpoint-policy.test.ts keeps them in step).
 *
 * Why a table: sub-accounts share the pool's upstream organisations, so the gateway is the only
 * wall between tenants and the only place spend is attributed. A path nobody classified follows
 * UNKNOWN_ENDPOINTS (refused by default) instead of being forwarded by accident.
 *
 * Patterns: `{file}`, `{batch}`, … name an object the caller must own (its kind); `{id}` is a
 * sub-object of an owned parent (a message of an owned thread) and is not looked up; a trailing
 * `/**` matches anything below. Method `*` matches every method. classify.ts matches requests.
 */
import { ENABLEABLE_FAMILIES, type EnableableFamily } from './families.js';
import type { ObjectKind } from './object-kinds.js';

export type RoutePolicy =
  /** Billed at once from the answer's usage; admission reserves the worst case first. */
  | 'metered'
  /** Reserved at creation; the gateway follows the work until upstream ends it, then bills it. */
  | 'metered-when-done'
  /** Nothing to bill: reads, and management of the caller's own objects. */
  | 'free'
  /** Spend the gateway cannot meter: 403 `endpoint_not_allowed` unless enabled for the account. */
  | 'refused'
  /** Never forwarded on a tenant's behalf (organisation administration, retired or unisolated APIs). */
  | 'never';

export type RouteAction =
  | { readonly kind: 'forward' }
  /** The answer creates an object of `object`, owned by the caller; its id is read from the answer. */
  | {
      readonly kind: 'create';
      readonly object: ObjectKind;
      /** `store-true`: only when the body has `store: true`; `store-not-false`: unless `store: false`. */
      readonly when?: 'store-true' | 'store-not-false';
      /** The object's attribute kept for list filters (files: purpose; chat completions: model). */
      readonly tag?: 'purpose' | 'model';
    }
  /** A 2xx answer deletes the object named by the path. */
  | { readonly kind: 'delete' }
  /** Answered by the gateway from its own records: only the caller's objects. */
  | {
      readonly kind: 'list';
      readonly object: ObjectKind;
      readonly order: 'asc' | 'desc';
      readonly tag?: 'purpose' | 'model';
    }
  /** `POST /v1/batches`: reserve the input file's worst case, then follow the batch until it ends. */
  | { readonly kind: 'batch' }
  /** `GET /v1/realtime` is a WebSocket endpoint (src/realtime); a plain GET gets 426. */
  | { readonly kind: 'websocket' }
  /** `GET /v1/models`: upstream's list without the fine-tuned models of other sub-accounts. */
  | { readonly kind: 'models' };

export interface RouteDef {
  readonly method: 'GET' | 'POST' | 'DELETE' | '*';
  readonly pattern: string;
  readonly policy: RoutePolicy;
  readonly action: RouteAction;
  /** The JSON body may name objects (`file_id`, `previous_response_id`, …) that must be the caller's. */
  readonly bodyRefs: boolean;
  /** `background: true` work (responses) is followed and billed when done. */
  readonly background?: boolean;
}

export interface FamilyDef {
  readonly title: string;
  /** One sentence for the docs: how it is billed, or why it is refused. */
  readonly note: string;
  readonly routes: readonly RouteDef[];
}

const FORWARD: RouteAction = { kind: 'forward' };

function r(
  method: RouteDef['method'],
  pattern: string,
  policy: RoutePolicy,
  action: RouteAction = FORWARD,
  extra: { bodyRefs?: boolean; background?: boolean } = {},
): RouteDef {
  return { method, pattern, policy, action, bodyRefs: extra.bodyRefs ?? false, ...extra };
}

const refs = { bodyRefs: true };

export const FAMILIES = {
  chat: {
    title: 'Chat completions',
    note: 'Billed from usage. With store: true the completion is the caller’s own stored object.',
    routes: [
      r(
        'POST',
        '/v1/chat/completions',
        'metered',
        { kind: 'create', object: 'chat_completion', when: 'store-true', tag: 'model' },
        refs,
      ),
      r('GET', '/v1/chat/completions', 'free', {
        kind: 'list',
        object: 'chat_completion',
        order: 'asc',
        tag: 'model',
      }),
      r('GET', '/v1/chat/completions/{chat_completion}', 'free'),
      r('POST', '/v1/chat/completions/{chat_completion}', 'free'),
      r('DELETE', '/v1/chat/completions/{chat_completion}', 'free', { kind: 'delete' }),
      r('GET', '/v1/chat/completions/{chat_completion}/messages', 'free'),
    ],
  },
  completions: {
    title: 'Completions (legacy)',
    note: 'Billed from usage.',
    routes: [r('POST', '/v1/completions', 'metered')],
  },
  responses: {
    title: 'Responses',
    note: 'Billed from usage; background responses are reserved, followed and billed when they end. Stored responses belong to their creator.',
    routes: [
      r(
        'POST',
        '/v1/responses',
        'metered',
        { kind: 'create', object: 'response', when: 'store-not-false' },
        { ...refs, background: true },
      ),
      r('POST', '/v1/responses/input_tokens', 'free', FORWARD, refs),
      r('POST', '/v1/responses/compact', 'metered', FORWARD, refs),
      r('GET', '/v1/responses/{response}', 'free'),
      r('DELETE', '/v1/responses/{response}', 'free', { kind: 'delete' }),
      r('POST', '/v1/responses/{response}/cancel', 'free'),
      r('GET', '/v1/responses/{response}/input_items', 'free'),
    ],
  },
  conversations: {
    title: 'Conversations',
    note: 'Free; each conversation belongs to its creator.',
    routes: [
      r('POST', '/v1/conversations', 'free', { kind: 'create', object: 'conversation' }, refs),
      r('GET', '/v1/conversations/{conversation}', 'free'),
      r('POST', '/v1/conversations/{conversation}', 'free'),
      r('DELETE', '/v1/conversations/{conversation}', 'free', { kind: 'delete' }),
      r('GET', '/v1/conversations/{conversation}/items', 'free'),
      r('POST', '/v1/conversations/{conversation}/items', 'free', FORWARD, refs),
      r('GET', '/v1/conversations/{conversation}/items/{id}', 'free'),
      r('DELETE', '/v1/conversations/{conversation}/items/{id}', 'free'),
    ],
  },
  embeddings: {
    title: 'Embeddings',
    note: 'Billed from usage.',
    routes: [r('POST', '/v1/embeddings', 'metered')],
  },
  moderations: {
    title: 'Moderations',
    note: 'Billed from usage (at the price table’s price, usually 0).',
    routes: [r('POST', '/v1/moderations', 'metered')],
  },
  images: {
    title: 'Images',
    note: 'Billed per image (quality and size) or from usage.',
    routes: [
      r('POST', '/v1/images/generations', 'metered'),
      r('POST', '/v1/images/edits', 'metered', FORWARD, refs),
      r('POST', '/v1/images/variations', 'metered'),
    ],
  },
  audio: {
    title: 'Audio',
    note: 'Speech by input characters, transcription and translation by duration or usage.',
    routes: [
      r('POST', '/v1/audio/speech', 'metered'),
      r('POST', '/v1/audio/transcriptions', 'metered'),
      r('POST', '/v1/audio/translations', 'metered'),
    ],
  },
  realtime: {
    title: 'Realtime (WebSocket)',
    note: 'Each response.done is billed from its usage as it arrives; a reservation covers every response in flight.',
    routes: [r('GET', '/v1/realtime', 'metered', { kind: 'websocket' })],
  },
  realtime_client_secrets: {
    title: 'Realtime client secrets',
    note: 'An ephemeral key talks to upstream directly, out of the gateway’s sight: refused unless enabled, then forwarded unmetered (browsers can use the WebSocket endpoint with the openai-insecure-api-key subprotocol instead).',
    routes: [
      r('POST', '/v1/realtime/client_secrets', 'refused'),
      r('POST', '/v1/realtime/sessions', 'refused'),
      r('POST', '/v1/realtime/transcription_sessions', 'refused'),
    ],
  },
  realtime_calls: {
    title: 'Realtime calls (WebRTC, SIP)',
    note: 'Media goes straight to upstream and cannot be metered here: use the WebSocket endpoint.',
    routes: [r('*', '/v1/realtime/calls/**', 'never'), r('POST', '/v1/realtime/calls', 'never')],
  },
  models: {
    title: 'Models',
    note: 'Free to read. A model fine-tuned through the gateway is its creator’s: hidden from and refused to the others. Deleting a fine-tuned model is never forwarded.',
    routes: [
      r('GET', '/v1/models', 'free', { kind: 'models' }),
      r('GET', '/v1/models/{model}', 'free'),
      r('DELETE', '/v1/models/{id}', 'never'),
    ],
  },
  files: {
    title: 'Files',
    note: 'Free; each file belongs to its uploader, lists show only the caller’s files.',
    routes: [
      r('POST', '/v1/files', 'free', { kind: 'create', object: 'file', tag: 'purpose' }),
      r('GET', '/v1/files', 'free', { kind: 'list', object: 'file', order: 'desc', tag: 'purpose' }),
      r('GET', '/v1/files/{file}', 'free'),
      r('DELETE', '/v1/files/{file}', 'free', { kind: 'delete' }),
      r('GET', '/v1/files/{file}/content', 'free'),
    ],
  },
  uploads: {
    title: 'Uploads',
    note: 'Free; the upload and the file it completes into belong to the uploader.',
    routes: [
      r('POST', '/v1/uploads', 'free', { kind: 'create', object: 'upload' }),
      r('POST', '/v1/uploads/{upload}/parts', 'free'),
      r('POST', '/v1/uploads/{upload}/complete', 'free', { kind: 'create', object: 'file', tag: 'purpose' }),
      r('POST', '/v1/uploads/{upload}/cancel', 'free'),
    ],
  },
  batches: {
    title: 'Batches',
    note: 'The input file’s worst case is reserved at creation; the gateway follows every open batch itself and bills its output at the price table’s batch_percent when it ends.',
    routes: [
      r('POST', '/v1/batches', 'metered-when-done', { kind: 'batch' }, refs),
      r('GET', '/v1/batches', 'free', { kind: 'list', object: 'batch', order: 'desc' }),
      r('GET', '/v1/batches/{batch}', 'free'),
      r('POST', '/v1/batches/{batch}/cancel', 'free'),
    ],
  },
  vector_stores: {
    title: 'Vector stores',
    note: 'Storage is billed by upstream per GB-day, which the gateway cannot meter: refused unless enabled, then forwarded unmetered.',
    routes: [
      r('POST', '/v1/vector_stores', 'refused', { kind: 'create', object: 'vector_store' }, refs),
      r('GET', '/v1/vector_stores', 'refused', { kind: 'list', object: 'vector_store', order: 'desc' }),
      r('GET', '/v1/vector_stores/{vector_store}', 'refused'),
      r('POST', '/v1/vector_stores/{vector_store}', 'refused'),
      r('DELETE', '/v1/vector_stores/{vector_store}', 'refused', { kind: 'delete' }),
      r('*', '/v1/vector_stores/{vector_store}/**', 'refused', FORWARD, refs),
    ],
  },
  assistants: {
    title: 'Assistants and threads (beta)',
    note: 'Free to manage; each assistant and thread belongs to its creator. Runs are not forwarded (not metered; the Assistants API is retired upstream).',
    routes: [
      r('POST', '/v1/assistants', 'free', { kind: 'create', object: 'assistant' }, refs),
      r('GET', '/v1/assistants', 'free', { kind: 'list', object: 'assistant', order: 'desc' }),
      r('GET', '/v1/assistants/{assistant}', 'free'),
      r('POST', '/v1/assistants/{assistant}', 'free', FORWARD, refs),
      r('DELETE', '/v1/assistants/{assistant}', 'free', { kind: 'delete' }),
      r('POST', '/v1/threads/runs', 'never'),
      r('POST', '/v1/threads', 'free', { kind: 'create', object: 'thread' }, refs),
      r('GET', '/v1/threads/{thread}', 'free'),
      r('POST', '/v1/threads/{thread}', 'free', FORWARD, refs),
      r('DELETE', '/v1/threads/{thread}', 'free', { kind: 'delete' }),
      r('GET', '/v1/threads/{thread}/messages', 'free'),
      r('POST', '/v1/threads/{thread}/messages', 'free', FORWARD, refs),
      r('*', '/v1/threads/{thread}/messages/**', 'free'),
      r('*', '/v1/threads/{thread}/runs/**', 'never'),
      r('POST', '/v1/threads/{thread}/runs', 'never'),
    ],
  },
  fine_tuning: {
    title: 'Fine-tuning',
    note: 'Training is billed by upstream and not metered here: refused unless enabled, then forwarded unmetered. Checkpoint permissions and graders are never forwarded.',
    routes: [
      r('POST', '/v1/fine_tuning/jobs', 'refused', { kind: 'create', object: 'fine_tuning_job' }, refs),
      r('GET', '/v1/fine_tuning/jobs', 'refused', { kind: 'list', object: 'fine_tuning_job', order: 'desc' }),
      r('GET', '/v1/fine_tuning/jobs/{fine_tuning_job}', 'refused'),
      r('*', '/v1/fine_tuning/jobs/{fine_tuning_job}/**', 'refused'),
      r('*', '/v1/fine_tuning/**', 'never'),
    ],
  },
  containers: {
    title: 'Containers',
    note: 'Billed by upstream per container session: refused unless enabled, then forwarded unmetered.',
    routes: [
      r('POST', '/v1/containers', 'refused', { kind: 'create', object: 'container' }, refs),
      r('GET', '/v1/containers', 'refused', { kind: 'list', object: 'container', order: 'desc' }),
      r('GET', '/v1/containers/{container}', 'refused'),
      r('DELETE', '/v1/containers/{container}', 'refused', { kind: 'delete' }),
      r('*', '/v1/containers/{container}/**', 'refused'),
    ],
  },
  videos: {
    title: 'Videos',
    note: 'Billed by upstream per second of video: refused unless enabled, then forwarded unmetered.',
    routes: [
      r('POST', '/v1/videos', 'refused', { kind: 'create', object: 'video' }, refs),
      r('GET', '/v1/videos', 'refused', { kind: 'list', object: 'video', order: 'desc' }),
      r('GET', '/v1/videos/{video}', 'refused'),
      r('DELETE', '/v1/videos/{video}', 'refused', { kind: 'delete' }),
      r('GET', '/v1/videos/{video}/content', 'refused'),
      r('POST', '/v1/videos/{video}/remix', 'refused', { kind: 'create', object: 'video' }),
    ],
  },
  evals: {
    title: 'Evals',
    note: 'Runs models out of the gateway’s sight: never forwarded.',
    routes: [r('*', '/v1/evals/**', 'never'), r('*', '/v1/evals', 'never')],
  },
  chatkit: {
    title: 'ChatKit',
    note: 'Hands out client secrets that talk to upstream directly: never forwarded.',
    routes: [r('*', '/v1/chatkit/**', 'never')],
  },
  organization: {
    title: 'Organization administration',
    note: 'Administration of the upstream organisation (keys, projects, users, usage): never forwarded.',
    routes: [r('*', '/v1/organization/**', 'never')],
  },
} as const satisfies Record<string, FamilyDef>;

export type FamilyName = keyof typeof FAMILIES;

// Every enableable family must be in the table; checked once at module load (a programming error).
for (const f of ENABLEABLE_FAMILIES) if (!Object.hasOwn(FAMILIES, f)) throw new Error(`no family ${f}`);

/** Whether a refused family is open to this account (globally or by its AllowEndpoints). */
export function isEnabled(
  family: FamilyName,
  global: readonly EnableableFamily[],
  account: ReadonlySet<string> | null,
): boolean {
  return (global as readonly string[]).includes(family) || (account?.has(family) ?? false);
}
