/**
 * What a successful answer did to the caller's objects: the object it created becomes the
 * caller's (pinned to the key that created it), the object a DELETE named is forgotten.
 */
import type { Account } from '../accounts/account.js';
import type { PoolKey } from '../keys/key-pool.js';
import type { ParsedRequest } from '../proxy/parse-request.js';
import { multipartField } from '../proxy/parse-request.js';
import type { Classified } from './classify.js';
import type { RouteAction } from './endpoint-policy.js';
import { OBJECT_KINDS, type ObjectKind } from './object-kinds.js';
import type { ObjectRecord, ObjectRegistry } from './object-registry.js';
import type { Scope } from './object-scope.js';
import { jsonObject } from './json-object.js';

/** The kind of object this request creates when it succeeds, if any. */
export function createdKind(action: RouteAction, req: ParsedRequest): ObjectKind | undefined {
  if (action.kind === 'batch') return 'batch';
  if (action.kind !== 'create') return undefined;
  const store = req.json?.['store'];
  if (action.when === 'store-true' && store !== true) return undefined;
  if (action.when === 'store-not-false' && store === false) return undefined;
  return action.object;
}

/** The id prefix the relay looks for in the answer of a creating request. */
export function createdPrefix(action: RouteAction, req: ParsedRequest): string | undefined {
  const kind = createdKind(action, req);
  return kind === undefined ? undefined : OBJECT_KINDS[kind].prefix;
}

export interface Answer {
  readonly status: number;
  /** The pool key that served the answer. */
  readonly key: PoolKey;
  readonly createdId: string | undefined;
  /** The JSON answer, for the created object's list attribute (a file's purpose). */
  readonly body: Buffer | undefined;
}

export function recordObjects(
  registry: ObjectRegistry,
  account: Account,
  classified: Classified,
  scope: Extract<Scope, { ok: true }>,
  req: ParsedRequest,
  answer: Answer,
  now: number,
): ObjectRecord | undefined {
  if (answer.status < 200 || answer.status >= 300) return undefined;
  const action = classified.route.action;
  if (action.kind === 'delete') {
    const target = scope.pathObjects[scope.pathObjects.length - 1];
    if (target !== undefined) registry.markDeleted(target, now);
    return undefined;
  }
  const kind = createdKind(action, req);
  if (kind === undefined || answer.createdId === undefined) return undefined;
  // An id the gateway already gave to someone else keeps its owner, whatever upstream answered.
  const known = registry.peek(answer.createdId);
  if (known !== undefined && known.accountId !== account.id) return undefined;
  // Recorded already when its id went by in a stream (several instances): the same record.
  if (registry.shared && known?.kind === kind && known.keyId === answer.key.id && known.deletedAt === null)
    return known;
  const rec: ObjectRecord = {
    id: answer.createdId,
    kind,
    accountId: account.id,
    keyId: answer.key.id,
    keyGroup: answer.key.group,
    createdAt: now,
    tag: action.kind === 'create' ? tagOf(action.tag, req, answer.body) : null,
    deletedAt: null,
    follow: null,
  };
  registry.add(rec);
  return rec;
}

/** A file's purpose or a stored completion's model, kept for the list filters. */
function tagOf(
  tag: 'purpose' | 'model' | undefined,
  req: ParsedRequest,
  body: Buffer | undefined,
): string | null {
  if (tag === 'model') return req.model ?? null;
  if (tag !== 'purpose') return null;
  if (req.multipart && req.body !== undefined) {
    const purpose = multipartField(req.body, 'purpose');
    if (purpose !== undefined) return purpose;
  }
  const obj = answerObject(body);
  const file = obj?.['file'] as Record<string, unknown> | undefined;
  const purpose = obj?.['purpose'] ?? file?.['purpose'];
  return typeof purpose === 'string' ? purpose : null;
}

/**
 * Objects upstream creates on behalf of an owned one — a batch's output and error files, a
 * fine-tuning job's result files and fine-tuned model — become the parent's owner's, held by the
 * same key, the first time the gateway sees them (in an answer, a list, or the follower's poll):
 * otherwise nobody could download a batch's results, and everybody could use a tenant's model.
 * Returns the records it added (to wait until other instances can find them: `whenShared`).
 */
export async function adoptDerived(
  registry: ObjectRegistry,
  parent: ObjectRecord,
  obj: Record<string, unknown>,
  now: number,
): Promise<ObjectRecord[]> {
  const found: Array<{ id: string; kind: ObjectKind }> = [];
  const add = (v: unknown, kind: ObjectKind): void => {
    for (const id of Array.isArray(v) ? v : [v]) {
      if (typeof id === 'string' && id.startsWith(OBJECT_KINDS[kind].prefix)) found.push({ id, kind });
    }
  };
  add(obj['output_file_id'], 'file');
  add(obj['error_file_id'], 'file');
  add(obj['result_files'], 'file');
  if (parent.kind === 'fine_tuning_job') add(obj['fine_tuned_model'], 'model');
  const added: ObjectRecord[] = [];
  for (const { id, kind } of found) {
    if ((await registry.get(id)) !== undefined) continue;
    const rec: ObjectRecord = {
      id,
      kind,
      accountId: parent.accountId,
      keyId: parent.keyId,
      keyGroup: parent.keyGroup,
      createdAt: now,
      tag: null,
      deletedAt: null,
      follow: null,
    };
    registry.add(rec);
    added.push(rec);
  }
  return added;
}

/** The JSON object of an answer, when it is one (and small enough to parse on the side). */
export function answerObject(body: Buffer | undefined): Record<string, unknown> | undefined {
  return body === undefined || body.length > 1024 * 1024 ? undefined : jsonObject(body);
}
