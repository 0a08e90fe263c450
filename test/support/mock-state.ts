// State of the mock OpenAI upstream: one store of objects per upstream organisation (chosen by the API key
// of each request), the id counter shared by all of them, the queue of work that upstream finishes later
// (batches, background responses, fine-tuning jobs, videos), and the request context and route types the
// endpoint modules (mock-inference, mock-responses, mock-files, mock-objects) are written against.
import type { IncomingHttpHeaders } from 'node:http';
import { invalidJsonReply, parseJsonObject, type Json, type Reply } from './mock-http.js';

export const DEFAULT_ORGANISATION = 'org-default';

export interface StreamOptions {
  /** Number of content chunks (the first one also carries `delta.role`). */
  chunks: number;
  /** Delay between two SSE events. */
  intervalMs: number;
  /** Assistant text, used by streamed and non-streamed answers alike. */
  content: string;
}

// ---------------------------------------------------------------------------------------------------
// Stored objects of one organisation
// ---------------------------------------------------------------------------------------------------

export interface StoredFile {
  meta: Json;
  content: Buffer;
}

export interface StoredUpload {
  meta: Json;
  parts: Map<string, Buffer>;
}

export interface StoredResponse {
  /** The object GET /responses/{id} answers. */
  response: Json;
  inputItems: Json[];
  /** Characters of text in this response and all before it: the context a follow-up is billed for. */
  contextChars: number;
}

export interface StoredConversation {
  meta: Json;
  items: Map<string, Json>;
  /** Characters of text in the items: the context a response in this conversation is billed for. */
  contextChars: number;
}

export interface StoredChat {
  completion: Json;
  messages: Json[];
}

export interface StoredVectorStore {
  meta: Json;
  files: Map<string, Json>;
  fileBatches: Map<string, Json>;
}

export interface StoredThread {
  meta: Json;
  messages: Map<string, Json>;
}

export interface StoredJob {
  job: Json;
  events: Json[];
}

export interface OrgState {
  name: string;
  files: Map<string, StoredFile>;
  uploads: Map<string, StoredUpload>;
  batches: Map<string, Json>;
  responses: Map<string, StoredResponse>;
  conversations: Map<string, StoredConversation>;
  chatCompletions: Map<string, StoredChat>;
  vectorStores: Map<string, StoredVectorStore>;
  assistants: Map<string, Json>;
  threads: Map<string, StoredThread>;
  fineTuningJobs: Map<string, StoredJob>;
  /** Fine-tuned models (base models are the same everywhere and live in MOCK_MODEL_IDS). */
  models: Map<string, Json>;
  containers: Map<string, Json>;
  videos: Map<string, Json>;
  clientSecrets: Map<string, Json>;
}

function newOrgState(name: string): OrgState {
  return {
    name,
    files: new Map(),
    uploads: new Map(),
    batches: new Map(),
    responses: new Map(),
    conversations: new Map(),
    chatCompletions: new Map(),
    vectorStores: new Map(),
    assistants: new Map(),
    threads: new Map(),
    fineTuningJobs: new Map(),
    models: new Map(),
    containers: new Map(),
    videos: new Map(),
    clientSecrets: new Map(),
  };
}

// ---------------------------------------------------------------------------------------------------
// Read-only view for assertions
// ---------------------------------------------------------------------------------------------------

export type ObjectType =
  | 'files'
  | 'uploads'
  | 'batches'
  | 'responses'
  | 'conversations'
  | 'conversationItems'
  | 'chatCompletions'
  | 'vectorStores'
  | 'vectorStoreFiles'
  | 'assistants'
  | 'threads'
  | 'messages'
  | 'fineTuningJobs'
  | 'models'
  | 'containers'
  | 'videos'
  | 'clientSecrets';

/** A snapshot of one organisation's objects, as the API would show them, frozen. */
export interface OrgObjects {
  readonly org: string;
  /** Number of objects of every type together: 0 means nothing was ever created (or all was deleted). */
  readonly total: number;
  readonly counts: Readonly<Record<ObjectType, number>>;
  readonly ids: Readonly<Record<ObjectType, readonly string[]>>;
  readonly records: Readonly<Record<ObjectType, readonly Readonly<Json>[]>>;
  /** Ids of this organisation's work that has not finished yet (see MockUpstream.advance). */
  readonly pending: readonly string[];
  /** Shortcut for records.batches. */
  readonly batches: readonly Readonly<Json>[];
  /** A copy of a stored file's bytes. */
  fileContent(id: string): Buffer | undefined;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

function snapshotRecords(org: OrgState): Record<ObjectType, Json[]> {
  const conversations = [...org.conversations.values()];
  const vectorStores = [...org.vectorStores.values()];
  const threads = [...org.threads.values()];
  return {
    files: [...org.files.values()].map((file) => file.meta),
    uploads: [...org.uploads.values()].map((upload) => upload.meta),
    batches: [...org.batches.values()],
    responses: [...org.responses.values()].map((stored) => stored.response),
    conversations: conversations.map((conversation) => conversation.meta),
    conversationItems: conversations.flatMap((conversation) => [...conversation.items.values()]),
    chatCompletions: [...org.chatCompletions.values()].map((chat) => chat.completion),
    vectorStores: vectorStores.map((store) => store.meta),
    vectorStoreFiles: vectorStores.flatMap((store) => [...store.files.values()]),
    assistants: [...org.assistants.values()],
    threads: threads.map((thread) => thread.meta),
    messages: threads.flatMap((thread) => [...thread.messages.values()]),
    fineTuningJobs: [...org.fineTuningJobs.values()].map((stored) => stored.job),
    models: [...org.models.values()],
    containers: [...org.containers.values()],
    videos: [...org.videos.values()],
    clientSecrets: [...org.clientSecrets.values()],
  };
}

function recordId(record: Json): string {
  return typeof record.id === 'string' ? record.id : String(record.value);
}

// ---------------------------------------------------------------------------------------------------
// Work finished later
// ---------------------------------------------------------------------------------------------------

export type BatchOutcome = 'completed' | 'expired' | 'failed';

export interface AdvanceOptions {
  /** How pending batches end (default 'completed'); batches being cancelled always end 'cancelled'. */
  batches?: BatchOutcome;
}

/** 'manual': nothing finishes until MockUpstream.advance(); else each piece finishes `delayMs` after it began. */
export type AsyncWorkMode = 'manual' | { delayMs: number; batches?: BatchOutcome };

export interface Work {
  /** The id of the object the work belongs to; new work for the same id replaces the old. */
  id: string;
  org: string;
  finish(options: Required<AdvanceOptions>): void;
}

interface PendingWork {
  work: Work;
  timer: NodeJS.Timeout | undefined;
}

// ---------------------------------------------------------------------------------------------------
// The world: every organisation, the id counter and the work queue
// ---------------------------------------------------------------------------------------------------

export class MockWorld {
  private readonly orgs = new Map<string, OrgState>();
  private readonly keyOrgs = new Map<string, string>();
  private readonly pending = new Map<string, PendingWork>();
  // Never reset, not even by reset(): a gateway under test keeps the ids it saw in earlier tests, and a
  // reused id would make it believe a new object belongs to an old owner.
  private seq = 0;
  private mode: AsyncWorkMode;

  constructor(
    private readonly initialOrganisations: Readonly<Record<string, string>>,
    private readonly initialMode: AsyncWorkMode,
  ) {
    this.mode = initialMode;
    this.reset();
  }

  /** `${prefix}mock${n}`: OpenAI's prefix, then a marker and a counter unique for the server's life. */
  nextId(prefix: string): string {
    this.seq += 1;
    return `${prefix}mock${this.seq}`;
  }

  org(name: string): OrgState {
    let state = this.orgs.get(name);
    if (state === undefined) {
      state = newOrgState(name);
      this.orgs.set(name, state);
    }
    return state;
  }

  organisationOf(key: string | null): string {
    return (key === null ? undefined : this.keyOrgs.get(key)) ?? DEFAULT_ORGANISATION;
  }

  setOrganisation(key: string, org: string): void {
    this.keyOrgs.set(key, org);
  }

  /** Forgets every object and every pending piece of work; key → organisation goes back to the options. */
  reset(): void {
    for (const entry of this.pending.values()) clearTimeout(entry.timer);
    this.pending.clear();
    this.orgs.clear();
    this.keyOrgs.clear();
    for (const [key, org] of Object.entries(this.initialOrganisations)) this.keyOrgs.set(key, org);
    this.mode = this.initialMode;
  }

  close(): void {
    for (const entry of this.pending.values()) clearTimeout(entry.timer);
  }

  schedule(work: Work): void {
    clearTimeout(this.pending.get(work.id)?.timer);
    this.pending.set(work.id, { work, timer: this.timerFor(work) });
  }

  unschedule(id: string): void {
    clearTimeout(this.pending.get(id)?.timer);
    this.pending.delete(id);
  }

  isPending(id: string): boolean {
    return this.pending.has(id);
  }

  /** Finishes every pending piece of work now, in the order it began; returns the ids of their objects. */
  advance(options: AdvanceOptions = {}): string[] {
    const resolved: Required<AdvanceOptions> = { batches: options.batches ?? 'completed' };
    const due = [...this.pending.values()];
    for (const entry of due) this.finish(entry, resolved);
    return due.map((entry) => entry.work.id);
  }

  setMode(mode: AsyncWorkMode): void {
    this.mode = mode;
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer);
      entry.timer = this.timerFor(entry.work);
    }
  }

  objects(name: string): OrgObjects {
    const org = this.orgs.get(name) ?? newOrgState(name);
    const records = structuredClone(snapshotRecords(org));
    const types = Object.keys(records) as ObjectType[];
    const counts = Object.fromEntries(types.map((type) => [type, records[type].length]));
    const ids = Object.fromEntries(types.map((type) => [type, records[type].map(recordId)]));
    const pending = [...this.pending.values()].filter((entry) => entry.work.org === name);
    return deepFreeze({
      org: name,
      total: Object.values(records).reduce((sum, list) => sum + list.length, 0),
      counts: counts as Record<ObjectType, number>,
      ids: ids as Record<ObjectType, string[]>,
      records,
      pending: pending.map((entry) => entry.work.id),
      batches: records.batches,
      fileContent: (id: string) => {
        const content = org.files.get(id)?.content;
        return content === undefined ? undefined : Buffer.from(content);
      },
    });
  }

  private finish(entry: PendingWork, options: Required<AdvanceOptions>): void {
    // Work cancelled or replaced while an earlier piece finished is skipped.
    if (this.pending.get(entry.work.id) !== entry) return;
    clearTimeout(entry.timer);
    this.pending.delete(entry.work.id);
    entry.work.finish(options);
  }

  private timerFor(work: Work): NodeJS.Timeout | undefined {
    const mode = this.mode;
    if (mode === 'manual') return undefined;
    const timer = setTimeout(() => {
      const entry = this.pending.get(work.id);
      if (entry?.work === work) this.finish(entry, { batches: mode.batches ?? 'completed' });
    }, mode.delayMs);
    // A pending batch must not keep a test process alive.
    timer.unref();
    return timer;
  }
}

// ---------------------------------------------------------------------------------------------------
// Request context and routes
// ---------------------------------------------------------------------------------------------------

export interface Ctx {
  method: string;
  /** Path without the query string. */
  path: string;
  query: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  key: string | null;
  stream: StreamOptions;
  /** The organisation of the request's key: the only objects the request can see. */
  org: OrgState;
  world: MockWorld;
}

export type Handler = (ctx: Ctx, params: string[]) => Reply | Promise<Reply>;
export type JsonHandler = (ctx: Ctx, body: Json, params: string[]) => Reply | Promise<Reply>;

export interface Route {
  method: string;
  pattern: RegExp;
  handler: Handler;
}

export function withJson(handler: JsonHandler): Handler {
  return (ctx, params) => {
    const body = parseJsonObject(ctx.body);
    return body === null ? invalidJsonReply() : handler(ctx, body, params);
  };
}

/** The i-th path parameter of a route match, URL-decoded. */
export function param(params: string[], i: number): string {
  return decodeURIComponent(params[i] ?? '');
}

export function queryOf(ctx: Ctx): URLSearchParams {
  return new URLSearchParams(ctx.query);
}
