/**
 * The ownership check of a request: every object its path or body names must belong to the
 * caller (else 404, the same answer as for an id that does not exist, and nothing reaches
 * upstream), and together they pin the request to the pool key or key group that holds them.
 */
import type { Account } from '../accounts/account.js';
import { GatewayError } from '../errors/catalogue.js';
import type { KeyAffinity } from '../keys/key-pool.js';
import type { ParsedRequest } from '../proxy/parse-request.js';
import { bodyRefs, type ObjectRef } from './body-refs.js';
import type { Classified } from './classify.js';
import { noSuchObject, OBJECT_KINDS, ownedOnlyIfKnown } from './object-kinds.js';
import type { ObjectRecord, ObjectRegistry } from './object-registry.js';

export type Scope =
  | {
      readonly ok: true;
      /** Pool keys allowed to serve the request; undefined when it names no object. */
      readonly affinity: KeyAffinity | undefined;
      /** The objects the path names, outermost first (a DELETE removes the last one). */
      readonly pathObjects: readonly ObjectRecord[];
    }
  | { readonly ok: false; readonly error: GatewayError };

const NONE: Scope = { ok: true, affinity: undefined, pathObjects: [] };

/**
 * The ownership check. Synchronous (no promise, no microtask) for the usual request, which names
 * no object at all; a lookup in the registry otherwise.
 */
export function resolveScope(
  registry: ObjectRegistry,
  account: Account,
  classified: Classified,
  req: ParsedRequest,
): Scope | Promise<Scope> {
  const fromPath: ObjectRef[] =
    classified.pathObjects.length === 0 ? [] : classified.pathObjects.map((o) => ({ ...o, param: 'id' }));
  const fromBody = classified.route.bodyRefs ? bodyRefs(req.body, req.json) : [];
  // A fine-tuned model made through the gateway is an object too (see ownedOnlyIfKnown).
  const model = req.model?.startsWith(OBJECT_KINDS.model.prefix) === true ? req.model : undefined;
  if (fromPath.length === 0 && fromBody.length === 0 && model === undefined) return NONE;
  const refs = [...fromPath, ...fromBody];
  if (model !== undefined) refs.push({ kind: 'model', id: model, param: 'model' });
  return lookUp(registry, account, refs, fromPath.length);
}

async function lookUp(
  registry: ObjectRegistry,
  account: Account,
  refs: readonly ObjectRef[],
  inPath: number,
): Promise<Scope> {
  const pathObjects: ObjectRecord[] = [];
  const pins: Array<{ keyId: number; group: string | null }> = [];
  for (const [i, ref] of refs.entries()) {
    const rec = await registry.get(ref.id);
    if (rec === undefined && ownedOnlyIfKnown(ref.kind)) continue;
    if (
      rec === undefined ||
      rec.accountId !== account.id ||
      rec.kind !== ref.kind ||
      rec.deletedAt !== null
    ) {
      return {
        ok: false,
        error: new GatewayError('object_not_found', noSuchObject(ref.kind, ref.id), ref.param),
      };
    }
    if (i < inPath) pathObjects.push(rec);
    if (!pins.some((p) => p.keyId === rec.keyId && p.group === rec.keyGroup))
      pins.push({ keyId: rec.keyId, group: rec.keyGroup });
  }
  if (pins.length === 0) return { ok: true, affinity: undefined, pathObjects };
  return { ok: true, affinity: { pins }, pathObjects };
}
