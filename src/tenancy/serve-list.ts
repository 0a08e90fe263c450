/**
 * List endpoints (`GET /v1/files`, `/v1/batches`, stored chat completions, …) answered by the
 * gateway from its own records, so a sub-account sees exactly its own objects and nothing of the
 * other tenants sharing the organisation. The page of ids comes from the store (OpenAI's cursor
 * paging: `limit`, `after`, `before`, `order`); each object is then fetched from upstream by id
 * with the key that holds it, so what the client sees is always current (a batch's status, a
 * vector store's file counts). An object upstream no longer has is marked deleted and skipped.
 *
 * Several instances: the page is the store's, after this instance's writer flushed, merged with
 * the objects the directory saw created on any instance within its recent window (another
 * instance may not have written them yet), so a list answered anywhere includes an object whose
 * creation was answered before it. Objects deleted elsewhere a moment ago are skipped when
 * upstream no longer has them, as above.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Account } from '../accounts/account.js';
import { GatewayError } from '../errors/catalogue.js';
import type { KeyPool } from '../keys/key-pool.js';
import { CancelGroup, type Cancel } from '../upstream/cancel.js';
import { readCapped, sendWithRetry, type RetryPolicy } from '../upstream/send-with-retry.js';
import type { UpstreamClient } from '../upstream/upstream-client.js';
import type { RouteAction } from './endpoint-policy.js';
import { noSuchObject, OBJECT_KINDS } from './object-kinds.js';
import type { ObjectRecord, ObjectRegistry } from './object-registry.js';
import { adoptDerived } from './record-objects.js';
import { jsonObject } from './json-object.js';

export interface ListDeps {
  readonly registry: ObjectRegistry;
  readonly pool: KeyPool;
  readonly upstream: UpstreamClient;
  readonly retry: RetryPolicy;
  readonly clock: () => number;
}

type ListAction = Extract<RouteAction, { kind: 'list' }>;

/** OpenAI's lists take up to 100 (files up to 10,000); each item here costs one upstream read. */
const MAX_LIMIT = 100;
const DEFAULT_LIMIT = 20;
const FETCH_CONCURRENCY = 8;
const MAX_OBJECT_BYTES = 4 * 1024 * 1024;

export async function serveList(
  deps: ListDeps,
  account: Account,
  action: ListAction,
  query: URLSearchParams,
  clientHeaders: IncomingHttpHeaders,
  cancel: Cancel,
): Promise<Buffer> {
  const limit = parseLimit(query.get('limit'));
  const orderParam = query.get('order');
  const order = orderParam === 'asc' || orderParam === 'desc' ? orderParam : action.order;
  const after = await cursor(deps.registry, account, action, query, 'after');
  const before = await cursor(deps.registry, account, action, query, 'before');
  const tag = action.tag === undefined ? undefined : (query.get(action.tag) ?? undefined);
  const rows = await deps.registry.page({
    accountId: account.id,
    kind: action.object,
    order,
    limit: limit + 1,
    after,
    before,
    tag,
  });
  const hasMore = rows.length > limit;
  const page = rows.slice(0, limit);
  // One cancel per read (a Cancel holds one hook); the client leaving aborts them all.
  const reads = new CancelGroup();
  cancel.onAbort(() => reads.abort());
  const derived: ObjectRecord[] = [];
  const fetched = await mapLimited(page, FETCH_CONCURRENCY, async (rec) => {
    const own = reads.create();
    try {
      return await fetchObject(deps, rec, clientHeaders, own, derived);
    } finally {
      reads.release(own);
    }
  });
  cancel.onAbort(undefined);
  // Several instances: result files the page reveals are published before the client sees them.
  await deps.registry.whenShared(derived)?.catch(() => undefined);
  const filters = metadataFilters(query);
  const data = fetched.filter(
    (o): o is Record<string, unknown> => o !== undefined && matchesMetadata(o, filters),
  );
  const first = page[0];
  const last = page[page.length - 1];
  return Buffer.from(
    JSON.stringify({
      object: 'list',
      data,
      first_id: first?.id ?? null,
      last_id: last?.id ?? null,
      has_more: hasMore,
    }),
  );
}

function parseLimit(raw: string | null): number {
  if (raw === null || raw === '') return DEFAULT_LIMIT;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1)
    throw new GatewayError('invalid_value', 'limit must be a positive integer.', 'limit');
  return Math.min(n, MAX_LIMIT);
}

/** A cursor must be one of the caller's own objects of the listed kind, like any other id. */
async function cursor(
  registry: ObjectRegistry,
  account: Account,
  action: ListAction,
  query: URLSearchParams,
  name: 'after' | 'before',
): Promise<ObjectRecord | undefined> {
  const id = query.get(name);
  if (id === null || id === '') return undefined;
  const rec = await registry.get(id);
  if (rec === undefined || rec.accountId !== account.id || rec.kind !== action.object)
    throw new GatewayError('object_not_found', noSuchObject(action.object, id), name);
  return rec;
}

async function fetchObject(
  deps: ListDeps,
  rec: ObjectRecord,
  clientHeaders: IncomingHttpHeaders,
  cancel: Cancel,
  derived: ObjectRecord[],
): Promise<Record<string, unknown> | undefined> {
  const base = OBJECT_KINDS[rec.kind].byId;
  if (base === undefined) return undefined;
  const sent = await sendWithRetry(
    deps.pool,
    deps.upstream,
    deps.retry,
    {
      method: 'GET',
      path: `${base}/${encodeURIComponent(rec.id)}`,
      clientHeaders: { accept: 'application/json', 'openai-beta': clientHeaders['openai-beta'] },
      body: undefined,
      cancel,
      affinity: { pins: [{ keyId: rec.keyId, group: rec.keyGroup }] },
    },
    () => undefined,
  );
  if (sent.kind === 'buffered' && sent.status === 404) {
    // Gone upstream (expired, deleted elsewhere): stop listing it.
    deps.registry.markDeleted(rec, deps.clock());
    return undefined;
  }
  if (sent.kind !== 'stream') return undefined;
  const raw = await readCapped(sent.response.body, MAX_OBJECT_BYTES);
  const obj = jsonObject(raw);
  if (obj !== undefined) derived.push(...(await adoptDerived(deps.registry, rec, obj, deps.clock())));
  return obj;
}

/** `metadata[key]=value` query filters (stored chat completions, fine-tuning jobs). */
function metadataFilters(query: URLSearchParams): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [k, v] of query) {
    const m = /^metadata\[(.+)\]$/.exec(k);
    if (m?.[1] !== undefined) out.push([m[1], v]);
  }
  return out;
}

function matchesMetadata(o: Record<string, unknown>, filters: ReadonlyArray<[string, string]>): boolean {
  if (filters.length === 0) return true;
  const meta = o['metadata'];
  if (typeof meta !== 'object' || meta === null) return false;
  return filters.every(([k, v]) => (meta as Record<string, unknown>)[k] === v);
}

async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
