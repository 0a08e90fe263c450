/**
 * The tenancy steps of the request path that need several collaborators: reserving a batch's
 * worst case before it is created, and, once an answer is in, recording the objects it created or
 * deleted and handing work billed when done to the follower.
 */
import type { Account } from '../accounts/account.js';
import type { Meter, Ticket } from '../billing/meter.js';
import { GatewayError } from '../errors/catalogue.js';
import type { ParsedRequest } from '../proxy/parse-request.js';
import type { StateWriter } from '../store/state-writer.js';
import type { Cancel } from '../upstream/cancel.js';
import { planBatch, type BatchPlanDeps } from './batch-plan.js';
import type { EndpointGate } from './endpoint-gate.js';
import type { Classified } from './classify.js';
import { FOLLOWED_PATHS, type Follower } from './follower.js';
import { noSuchObject } from './object-kinds.js';
import type { ObjectRecord, ObjectRegistry } from './object-registry.js';
import type { Scope } from './object-scope.js';
import { adoptDerived, answerObject, createdPrefix, recordObjects, type Answer } from './record-objects.js';
import type { ListDeps } from './serve-list.js';

export interface TenancyDeps {
  readonly endpoints: EndpointGate;
  readonly registry: ObjectRegistry;
  readonly follower: Follower;
  readonly writer: StateWriter;
  readonly meter: Meter;
  readonly batch: BatchPlanDeps;
  readonly list: ListDeps;
  readonly clock: () => number;
  /** Logs a failed write of a followed object (it stays queued and is retried). */
  readonly onWriteError: (err: unknown) => void;
}

/** A batch's reservation, held from before its creation until the follower settles it. */
export interface Work {
  readonly ticket: Ticket;
}

export async function reserveBatch(
  t: TenancyDeps,
  account: Account,
  requestId: string,
  req: ParsedRequest,
  cancel: Cancel,
): Promise<{ ok: true; work: Work } | { ok: false; error: GatewayError }> {
  const fileId = req.json?.['input_file_id'];
  if (typeof fileId !== 'string' || fileId === '')
    return {
      ok: false,
      error: new GatewayError('invalid_value', 'input_file_id is required.', 'input_file_id'),
    };
  // The ownership step already checked the file; read its record for the key that holds it.
  const input = await t.registry.get(fileId);
  if (input === undefined || input.accountId !== account.id)
    return {
      ok: false,
      error: new GatewayError('object_not_found', noSuchObject('file', fileId), 'input_file_id'),
    };
  const plan = await planBatch(t.batch, account, input, req.json?.['endpoint'], cancel);
  if (!plan.ok) return plan;
  // Several instances: the worst case may exceed this instance's lease; it asks for more first.
  const reserved = await t.meter.reserveAfterTopUp(account, {
    // Rekeyed to the batch id once upstream has created it (see afterAnswer).
    requestId: `${requestId}:batch`,
    path: FOLLOWED_PATHS.batch,
    model: 'batch',
    price: undefined,
    reserve: plan.reserve,
    pricePercent: t.batch.prices.batchPercent,
  });
  if (!reserved.ok) return reserved;
  return { ok: true, work: { ticket: reserved.ticket } };
}

/** How the pipeline delivers an answer for the tenancy steps that follow. */
export interface AnswerPlan {
  /** Id prefix of the object the answer creates (the relay finds its id). */
  readonly scanId: string | undefined;
  /**
   * Read the whole answer and record it before the client sees it: a background response or a
   * batch (work billed later), reads of a batch or fine-tuning job (the result files they name must
   * be the owner's before the owner asks for them), and answers that are rewritten. On several
   * instances also every JSON answer that creates or deletes an object: the client may send its
   * next request to another instance, which must already find the object (or its deletion).
   */
  readonly hold: boolean;
  /** Rewrites the answer before it leaves (the models list without other tenants' models). */
  readonly rewrite: ((body: Buffer) => Promise<Buffer>) | undefined;
  /** The answer may create, delete or reveal objects: `afterAnswer` must see it. */
  readonly record: boolean;
}

export const NO_PLAN: AnswerPlan = { scanId: undefined, hold: false, rewrite: undefined, record: false };

export function planAnswer(
  t: TenancyDeps,
  account: Account,
  classified: Classified,
  scope: Extract<Scope, { ok: true }>,
  req: ParsedRequest,
  work: Work | undefined,
): AnswerPlan {
  const action = classified.route.action;
  const scanId = createdPrefix(action, req);
  const parent = scope.pathObjects[scope.pathObjects.length - 1];
  const rewrite =
    action.kind === 'models' ? (b: Buffer) => hideOthersModels(t.registry, account, b) : undefined;
  const record = scanId !== undefined || parent !== undefined || work !== undefined;
  // The usual chat request creates nothing and names nothing: no plan, no extra work.
  if (!record && rewrite === undefined) return NO_PLAN;
  const hold =
    !req.stream &&
    (work !== undefined ||
      rewrite !== undefined ||
      (classified.route.background === true && req.json?.['background'] === true) ||
      parent?.kind === 'batch' ||
      parent?.kind === 'fine_tuning_job' ||
      // Several instances: published before the id (or the deletion) reaches the client. A JSON
      // answer is read whole by the client anyway; holding it costs one Redis round trip.
      (t.registry.shared && (scanId !== undefined || (action.kind === 'delete' && parent !== undefined))));
  return { scanId, hold, rewrite, record };
}

/**
 * Several instances, a streamed answer that creates an object (`stream: true` with `store`): the
 * callback the relay calls when the created id goes by, which records and publishes the object at
 * once, long before the stream ends, so that another instance finds it as soon as the client
 * could name it. Undefined on one instance (the object is recorded when the answer ends, as
 * always) and when the answer creates nothing. `afterAnswer` finds the same record afterwards.
 */
export function recordOnSight(
  t: TenancyDeps,
  c: Pick<AnswerContext, 'account' | 'classified' | 'scope' | 'req'>,
  plan: AnswerPlan,
  answer: { readonly status: number; readonly key: Answer['key'] },
): ((id: string) => void) | undefined {
  if (!t.registry.shared || plan.scanId === undefined || plan.hold) return undefined;
  if (answer.status < 200 || answer.status >= 300) return undefined;
  return (id) => {
    const created = { ...answer, createdId: id, body: undefined };
    try {
      recordObjects(t.registry, c.account, c.classified, c.scope, c.req, created, t.clock());
    } catch (err: unknown) {
      // Never into the relay: the object is recorded when the answer ends anyway.
      t.onWriteError(err);
    }
  };
}

export interface AnswerContext {
  readonly account: Account;
  readonly classified: Classified;
  readonly scope: Extract<Scope, { ok: true }>;
  readonly req: ParsedRequest;
  /** The request's own admission ticket. */
  readonly ticket: Ticket;
  /** A batch's reservation: adopted by the follower, or released when no batch was created. */
  readonly work: Work | undefined;
  readonly answer: Answer;
  /** The answer carried upstream's usage (a background response that already finished). */
  readonly usageSeen: boolean;
}

/**
 * Records what the answer created or deleted. Returns true when the follower adopted the
 * request's own ticket (a background response still running): the caller must not settle it.
 */
export async function afterAnswer(t: TenancyDeps, c: AnswerContext): Promise<boolean> {
  const now = t.clock();
  const rec = recordObjects(t.registry, c.account, c.classified, c.scope, c.req, c.answer, now);
  // A batch or fine-tuning job read through the gateway hands its result files to its owner.
  const parent = rec ?? c.scope.pathObjects[c.scope.pathObjects.length - 1];
  const ok = c.answer.status >= 200 && c.answer.status < 300;
  let derived: ObjectRecord[] = [];
  if ((parent?.kind === 'batch' || parent?.kind === 'fine_tuning_job') && ok) {
    const obj = answerObject(c.answer.body);
    if (obj !== undefined) derived = await adoptDerived(t.registry, parent, obj, now);
  }
  // Several instances: what the answer created or deleted is published while the flush below
  // runs; both are done before a held answer leaves (undefined on one instance).
  const deleted = ok && c.classified.route.action.kind === 'delete' ? parent : undefined;
  const shared = t.registry.whenShared([rec, deleted, ...derived])?.catch(t.onWriteError);
  let followed = false;
  let adopted = false;
  if (c.work !== undefined) {
    if (rec?.kind === 'batch') {
      // The usage record of a batch is keyed by the batch id. The reservation moves to the new
      // ticket as is; the old one is dropped unsettled, so nothing is released twice.
      t.follower.track(rec, { ...c.work.ticket, requestId: rec.id });
      followed = true;
    } else {
      t.meter.settle(c.work.ticket, {
        kind: 'failed',
        status: c.answer.status,
        outcome: 'upstream-error',
        attempts: 1,
      });
    }
  }
  if (
    rec?.kind === 'response' &&
    c.classified.route.background === true &&
    c.req.json?.['background'] === true &&
    !c.usageSeen
  ) {
    t.follower.track(rec, c.ticket);
    followed = adopted = true;
  }
  if (followed) {
    // Durable before the client learns the id: a crash now cannot lose the bill.
    await t.writer.flush().catch(t.onWriteError);
  }
  if (shared !== undefined) await shared;
  return adopted;
}

/**
 * `GET /v1/models` lists every model of the upstream organisation, fine-tuned ones included:
 * those fine-tuned through the gateway by another sub-account are taken out.
 */
export async function hideOthersModels(
  registry: ObjectRegistry,
  account: Account,
  body: Buffer,
): Promise<Buffer> {
  const list = answerObject(body);
  const data = list?.['data'];
  if (list === undefined || !Array.isArray(data)) return body;
  const kept: unknown[] = [];
  for (const m of data as unknown[]) {
    const id = typeof m === 'object' && m !== null ? (m as Record<string, unknown>)['id'] : undefined;
    if (typeof id === 'string' && id.startsWith('ft:')) {
      const rec = await registry.get(id);
      if (rec !== undefined && (rec.accountId !== account.id || rec.deletedAt !== null)) continue;
    }
    kept.push(m);
  }
  return kept.length === data.length ? body : Buffer.from(JSON.stringify({ ...list, data: kept }));
}
