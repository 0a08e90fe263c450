// Object ownership shared by several instances: two registries ("instances" A and B), each with its
// own state writer and Redis link, over one real PostgreSQL and a private redis-server. What A
// records is found by B at once, long before A's writer stores it; a deletion on A is a 404 on B
// at once; B's lists include what A created a moment ago; a streamed creation is published when
// its id goes by. Nothing is flushed unless a test says so.
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Account } from '../../src/accounts/account.js';
import type { Ticket } from '../../src/billing/meter.js';
import { RedisObjectDirectory } from '../../src/cluster/object-directory.js';
import { connectRedis, type ClusterRedis } from '../../src/cluster/redis.js';
import type { PoolKey } from '../../src/keys/key-pool.js';
import { parseRequest } from '../../src/proxy/parse-request.js';
import { StateWriter } from '../../src/store/state-writer.js';
import type { Store } from '../../src/store/store.js';
import { classify, type Classified } from '../../src/tenancy/classify.js';
import { ObjectRegistry, type ObjectRecord } from '../../src/tenancy/object-registry.js';
import { createObjectRepository } from '../../src/tenancy/object-repository.js';
import { resolveScope, type Scope } from '../../src/tenancy/object-scope.js';
import { afterAnswer, planAnswer, recordOnSight, type TenancyDeps } from '../../src/tenancy/tenancy.js';
import { uniquePrefix } from '../support/cluster-nodes.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { postgresBackend, storeBackends, type OpenedStore } from '../support/stores.js';

const hasPostgres = storeBackends().some((b) => b.name === 'postgres');
const silent = pino({ level: 'silent' });
const ALICE = { id: 7 } as Account;
const BOBBY = { id: 8 } as Account;
const KEY = { id: 3, group: 'org-a' } as PoolKey;

interface Node {
  readonly id: string;
  readonly link: ClusterRedis;
  readonly writer: StateWriter;
  readonly registry: ObjectRegistry;
  readonly tenancy: TenancyDeps;
  readonly writeErrors: unknown[];
}

let server: RedisServer;
let opened: OpenedStore;
let store: Store;
let prefix: string;
let nodes: Node[] = [];
let now = 1_800_000_000_000;

beforeAll(async () => {
  if (hasPostgres) server = await startRedisServer();
});
afterAll(async () => {
  await server?.stop();
});

async function startNode(id: string, shared = true): Promise<Node> {
  const link = await connectRedis({ addr: server.addr, db: 0, keyPrefix: prefix, name: id });
  const sink = store.shared!.deltaSink(id);
  // The writer's own timer never runs: only the tests flush.
  const writer = new StateWriter(sink, silent, { flushIntervalMs: 60_000, statsInterval: 1_000 });
  const registry = new ObjectRegistry(createObjectRepository(store.db), writer, {
    directory: shared ? new RedisObjectDirectory(link, { clock: () => now }) : undefined,
  });
  const writeErrors: unknown[] = [];
  // afterAnswer of answers that create or delete objects uses only these.
  const tenancy = {
    registry,
    writer,
    clock: () => now,
    onWriteError: (err: unknown) => writeErrors.push(err),
  } as unknown as TenancyDeps;
  const node = { id, link, writer, registry, tenancy, writeErrors };
  nodes.push(node);
  return node;
}

function classified(method: string, path: string): Classified {
  const c = classify(method, path);
  if (c === undefined) throw new Error(`no route for ${method} ${path}`);
  return c;
}

function request(body: unknown) {
  const parsed = parseRequest(
    '/v1/responses',
    { 'content-type': 'application/json' },
    Buffer.from(JSON.stringify(body)),
  );
  if (!parsed.ok) throw new Error('bad request');
  return parsed.req;
}

async function scope(node: Node, account: Account, method: string, path: string): Promise<Scope> {
  return resolveScope(node.registry, account, classified(method, path), request({}));
}

/** What the pipeline does once an answer is in (held: before the client sees it). */
async function answered(
  node: Node,
  account: Account,
  method: string,
  path: string,
  body: unknown,
  answer: { status: number; createdId?: string; json?: unknown },
): Promise<void> {
  const c = classified(method, path);
  const req = request(body);
  const s = await resolveScope(node.registry, account, c, req);
  if (!s.ok) throw s.error;
  await afterAnswer(node.tenancy, {
    account,
    classified: c,
    scope: s,
    req,
    ticket: {} as Ticket,
    work: undefined,
    answer: {
      status: answer.status,
      key: KEY,
      createdId: answer.createdId,
      body: answer.json === undefined ? undefined : Buffer.from(JSON.stringify(answer.json)),
    },
    usageSeen: true,
  });
}

async function storedRow(id: string) {
  return store.db.selectFrom('objects').selectAll().where('id', '=', id).executeTakeFirst();
}

describe.runIf(hasPostgres)('objects shared by two instances over PostgreSQL and Redis', () => {
  beforeEach(async () => {
    opened = await postgresBackend.open();
    store = opened.store;
    prefix = uniquePrefix();
    now += 60_000;
  });
  afterEach(async () => {
    await Promise.all(nodes.map((n) => n.link.close()));
    nodes = [];
    await opened.dispose();
  });

  it('finds an object created through A on B at once, with its owner and the key it is pinned to', async () => {
    const a = await startNode('a');
    const b = await startNode('b');
    await answered(
      a,
      ALICE,
      'POST',
      '/v1/responses',
      { model: 'gpt-4o-mini', input: 'hi' },
      {
        status: 200,
        createdId: 'resp_1',
      },
    );
    // Nothing is in the store yet: B knows it from the directory alone.
    expect(await storedRow('resp_1')).toBeUndefined();
    const mine = await scope(b, ALICE, 'GET', '/v1/responses/resp_1');
    expect(mine).toMatchObject({ ok: true, affinity: { pins: [{ keyId: 3, group: 'org-a' }] } });
    const theirs = await scope(b, BOBBY, 'GET', '/v1/responses/resp_1');
    expect(theirs.ok).toBe(false);
    expect(!theirs.ok && theirs.error.status).toBe(404);
    // In a body too: a chain of previous_response_id served by B.
    const c = classified('POST', '/v1/responses');
    const chained = await resolveScope(
      b.registry,
      ALICE,
      c,
      request({ model: 'gpt-4o-mini', input: 'more', previous_response_id: 'resp_1' }),
    );
    expect(chained).toMatchObject({ ok: true, affinity: { pins: [{ keyId: 3, group: 'org-a' }] } });
    // Once A's writer stores it, the row is the same object.
    await a.writer.flush();
    expect(await storedRow('resp_1')).toMatchObject({ account_id: 7, key_id: 3, key_group: 'org-a' });
    expect(a.writeErrors).toEqual([]);
  });

  it('answers 404 on B at once for an object deleted through A, though B had it in memory', async () => {
    const a = await startNode('a');
    const b = await startNode('b');
    await answered(
      a,
      ALICE,
      'POST',
      '/v1/responses',
      { model: 'gpt-4o-mini', input: 'hi' },
      {
        status: 200,
        createdId: 'resp_2',
      },
    );
    await a.writer.flush();
    expect((await scope(b, ALICE, 'GET', '/v1/responses/resp_2')).ok).toBe(true);
    await answered(a, ALICE, 'DELETE', '/v1/responses/resp_2', {}, { status: 200 });
    const after = await scope(b, ALICE, 'GET', '/v1/responses/resp_2');
    expect(after.ok).toBe(false);
    expect(!after.ok && after.error.status).toBe(404);
    // The store learns it with A's next flush; B's answer did not wait for it.
    expect((await storedRow('resp_2'))?.deleted_at).toBeNull();
    await a.writer.flush();
    expect(Number((await storedRow('resp_2'))?.deleted_at)).toBe(now);
  });

  it("lists on B include what A created a moment ago, in order, with the list's filters and cursors", async () => {
    const a = await startNode('a');
    const b = await startNode('b');
    const file = (id: string, createdAt: number, tag: string, accountId = 7): ObjectRecord => ({
      id,
      kind: 'file',
      accountId,
      keyId: 3,
      keyGroup: 'org-a',
      createdAt,
      tag,
      deletedAt: null,
      follow: null,
    });
    // Stored long ago by B, then created on A a moment ago (not stored yet).
    b.registry.add(file('file-b1', now - 3_000, 'batch'));
    b.registry.add(file('file-b2', now - 1_000, 'assistants'));
    await b.writer.flush();
    for (const f of [
      file('file-a1', now - 2_000, 'batch'),
      file('file-a2', now, 'batch'),
      file('file-x', now, 'batch', 8),
    ]) {
      a.registry.add(f);
      await a.registry.whenShared([f]);
    }
    const gone = file('file-a3', now - 500, 'batch');
    a.registry.add(gone);
    a.registry.markDeleted(gone, now);
    await a.registry.whenShared([gone]);
    const ids = async (q: Partial<Parameters<ObjectRegistry['page']>[0]> = {}) =>
      (await b.registry.page({ accountId: 7, kind: 'file', order: 'desc', limit: 10, ...q })).map(
        (r) => r.id,
      );
    expect(await ids()).toEqual(['file-a2', 'file-b2', 'file-a1', 'file-b1']);
    expect(await ids({ order: 'asc', limit: 2 })).toEqual(['file-b1', 'file-a1']);
    expect(await ids({ tag: 'batch' })).toEqual(['file-a2', 'file-a1', 'file-b1']);
    const b2 = await b.registry.get('file-b2');
    expect(await ids({ after: b2, limit: 1 })).toEqual(['file-a1']);
    expect(await ids({ before: await b.registry.get('file-b1'), limit: 2 })).toEqual(['file-b2', 'file-a1']);
    expect(await storedRow('file-a2')).toBeUndefined();
  });

  it('publishes a streamed creation when its id goes by, and records it once', async () => {
    const a = await startNode('a');
    const b = await startNode('b');
    const c = classified('POST', '/v1/responses');
    const req = request({ model: 'gpt-4o-mini', input: 'hi', stream: true });
    const s = await resolveScope(a.registry, ALICE, c, req);
    if (!s.ok) throw s.error;
    const plan = planAnswer(a.tenancy, ALICE, c, s, req, undefined);
    expect(plan).toMatchObject({ hold: false, scanId: 'resp_' });
    const seen = recordOnSight(a.tenancy, { account: ALICE, classified: c, scope: s, req }, plan, {
      status: 200,
      key: KEY,
    });
    expect(seen).toBeDefined();
    seen!('resp_streamed');
    // The relay goes on; a moment later (one Redis round trip) B knows the object.
    await a.registry.whenShared([a.registry.peek('resp_streamed')]);
    expect(await b.registry.get('resp_streamed')).toMatchObject({ accountId: 7, keyId: 3 });
    const first = a.registry.peek('resp_streamed');
    // The end of the stream records the same object, not a second one.
    await afterAnswer(a.tenancy, {
      account: ALICE,
      classified: c,
      scope: s,
      req,
      ticket: {} as Ticket,
      work: undefined,
      answer: { status: 200, key: KEY, createdId: 'resp_streamed', body: undefined },
      usageSeen: true,
    });
    expect(a.registry.peek('resp_streamed')).toBe(first);
    // Not for an error answer.
    expect(
      recordOnSight(a.tenancy, { account: ALICE, classified: c, scope: s, req }, plan, {
        status: 400,
        key: KEY,
      }),
    ).toBeUndefined();
  });

  it('holds JSON answers that create or delete objects only when several instances share them', async () => {
    const shared = await startNode('a');
    const alone = await startNode('solo', false);
    const plan = async (node: Node, method: string, path: string, body: unknown) => {
      const c = classified(method, path);
      const req = request(body);
      const s = await resolveScope(node.registry, ALICE, c, req);
      if (!s.ok) throw s.error;
      return planAnswer(node.tenancy, ALICE, c, s, req, undefined);
    };
    await answered(shared, ALICE, 'POST', '/v1/conversations', {}, { status: 200, createdId: 'conv_1' });
    await answered(alone, ALICE, 'POST', '/v1/conversations', {}, { status: 200, createdId: 'conv_2' });
    const create = { model: 'gpt-4o-mini', input: 'hi' };
    expect((await plan(shared, 'POST', '/v1/responses', create)).hold).toBe(true);
    expect((await plan(alone, 'POST', '/v1/responses', create)).hold).toBe(false);
    expect((await plan(shared, 'POST', '/v1/responses', { ...create, stream: true })).hold).toBe(false);
    expect((await plan(shared, 'DELETE', '/v1/conversations/conv_1', {})).hold).toBe(true);
    expect((await plan(alone, 'DELETE', '/v1/conversations/conv_2', {})).hold).toBe(false);
    // An answer that neither creates nor deletes is not held.
    expect((await plan(shared, 'POST', '/v1/responses', { ...create, store: false })).hold).toBe(false);
    expect(
      recordOnSight(
        alone.tenancy,
        {} as never,
        { scanId: 'resp_', hold: false, rewrite: undefined, record: true },
        { status: 200, key: KEY },
      ),
    ).toBeUndefined();
  });
});
