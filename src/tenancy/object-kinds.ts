/**
 * The upstream objects the gateway keeps an owner for: their OpenAI id prefixes and, for those
 * that can be listed, the path that fetches one by id. Every object created through the gateway
 * belongs to the sub-account that created it and is pinned to the pool key that holds it.
 */
export const OBJECT_KINDS = {
  file: { prefix: 'file-', title: 'File', byId: '/v1/files' },
  upload: { prefix: 'upload_', title: 'Upload', byId: undefined },
  batch: { prefix: 'batch_', title: 'Batch', byId: '/v1/batches' },
  response: { prefix: 'resp_', title: 'Response', byId: undefined },
  conversation: { prefix: 'conv_', title: 'Conversation', byId: undefined },
  chat_completion: { prefix: 'chatcmpl-', title: 'Chat completion', byId: '/v1/chat/completions' },
  vector_store: { prefix: 'vs_', title: 'Vector store', byId: '/v1/vector_stores' },
  assistant: { prefix: 'asst_', title: 'Assistant', byId: '/v1/assistants' },
  thread: { prefix: 'thread_', title: 'Thread', byId: undefined },
  fine_tuning_job: { prefix: 'ftjob-', title: 'Fine-tuning job', byId: '/v1/fine_tuning/jobs' },
  container: { prefix: 'cntr_', title: 'Container', byId: '/v1/containers' },
  video: { prefix: 'video_', title: 'Video', byId: '/v1/videos' },
  /** A fine-tuned model, created by an owned fine-tuning job. */
  model: { prefix: 'ft:', title: 'Model', byId: undefined },
} as const satisfies Record<string, { prefix: string; title: string; byId: string | undefined }>;

export type ObjectKind = keyof typeof OBJECT_KINDS;

export function isObjectKind(name: string): name is ObjectKind {
  return Object.hasOwn(OBJECT_KINDS, name);
}

/**
 * Kinds whose ids the gateway may not have seen created and that still belong to nobody in
 * particular: a model name. Base models and fine-tuned models made outside the gateway (the
 * operator's) are usable by every key; a fine-tuned model created through the gateway is its
 * creator's alone.
 */
export function ownedOnlyIfKnown(kind: ObjectKind): boolean {
  return kind === 'model';
}

/**
 * The answer for an object the caller may not see: the same 404 whether it belongs to another
 * sub-account or does not exist at all, in OpenAI's wording, so that ids cannot be probed.
 */
export function noSuchObject(kind: ObjectKind, id: string): string {
  return `No such ${OBJECT_KINDS[kind].title} object: ${id.slice(0, 200)}`;
}
