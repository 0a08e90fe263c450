/**
 * Objects a JSON request body names by id: `previous_response_id`, `conversation`, every
 * `file_id` (input files, file parts, batch and training files), vector stores, assistants,
 * threads, containers. Each must belong to the caller, and together they decide which pool key
 * may serve the request (the organisation that holds them).
 *
 * Keys are recognised by name anywhere in the body, so new places where OpenAI accepts a file id
 * are covered without a list of paths. A cheap byte check on the raw body skips the walk for the
 * usual chat request, which names no object at all.
 */
import type { ObjectKind } from './object-kinds.js';

export interface ObjectRef {
  readonly kind: ObjectKind;
  readonly id: string;
  /** The body field that named it (the `param` of a 404). */
  readonly param: string;
}

const REF_KEYS: Readonly<Record<string, ObjectKind>> = {
  previous_response_id: 'response',
  conversation: 'conversation',
  conversation_id: 'conversation',
  file_id: 'file',
  file_ids: 'file',
  input_file_id: 'file',
  training_file: 'file',
  validation_file: 'file',
  vector_store_id: 'vector_store',
  vector_store_ids: 'vector_store',
  assistant_id: 'assistant',
  thread_id: 'thread',
  container: 'container',
  container_id: 'container',
};

// Every ref key ends in one of these (with its closing quote); absent from the raw body → no refs.
const MARKERS = ['_id"', '_ids"', '_file"', '"conversation"', '"container"'].map((m) => Buffer.from(m));

/** Bodies nested deeper than this are not walked further (JSON.parse accepted them already). */
const MAX_DEPTH = 64;

export function bodyRefs(raw: Buffer | undefined, json: Record<string, unknown> | undefined): ObjectRef[] {
  if (raw === undefined || json === undefined || !MARKERS.some((m) => raw.includes(m))) return [];
  const out: ObjectRef[] = [];
  const seen = new Set<string>();
  const add = (kind: ObjectKind, id: unknown, param: string): void => {
    if (typeof id !== 'string' || id === '' || seen.has(id)) return;
    // `container` is also `{ "type": "auto" }`; only ids count.
    if (kind === 'container' && !id.startsWith('cntr_')) return;
    seen.add(id);
    out.push({ kind, id, param });
  };
  // Iterative walk: a hostile, deeply nested body must not overflow the stack.
  const stack: Array<{ value: unknown; depth: number }> = [{ value: json, depth: 0 }];
  while (stack.length > 0) {
    const { value, depth } = stack.pop() as { value: unknown; depth: number };
    if (depth > MAX_DEPTH || typeof value !== 'object' || value === null) continue;
    if (Array.isArray(value)) {
      for (const item of value) stack.push({ value: item, depth: depth + 1 });
      continue;
    }
    for (const [key, v] of Object.entries(value)) {
      const kind = REF_KEYS[key];
      if (kind === undefined) {
        stack.push({ value: v, depth: depth + 1 });
        continue;
      }
      if (Array.isArray(v)) for (const id of v) add(kind, id, key);
      else if (kind === 'conversation' && typeof v === 'object' && v !== null)
        add(kind, (v as Record<string, unknown>)['id'], key);
      else if (kind === 'container' && typeof v === 'object' && v !== null)
        // `{ "type": "auto", "file_ids": [...] }`: the files inside still count.
        stack.push({ value: v, depth: depth + 1 });
      else add(kind, v, key);
    }
  }
  return out;
}
