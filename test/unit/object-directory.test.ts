// The object directory over Redis (several instances), against a private redis-server: what is
// published is found at once, deletions outlive the objects they delete, lists see recent
// creations; and when Redis is away every answer is "could not", on which the registry falls
// back to the store (and writes its own objects there before they are answered).
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RedisObjectDirectory } from '../../src/cluster/object-directory.js';
import { connectRedis, type ClusterLog, type ClusterRedis } from '../../src/cluster/redis.js';
import { StateWriter } from '../../src/store/state-writer.js';
import type { Store } from '../../src/store/store.js';
import type { SharedObject } from '../../src/tenancy/object-directory.js';
import { ObjectRegistry, type ObjectRecord } from '../../src/tenancy/object-registry.js';
import { createObjectRepository } from '../../src/tenancy/object-repository.js';
import { sleep, uniquePrefix } from '../support/cluster-nodes.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { sqliteBackend, type OpenedStore } from '../support/stores.js';

const NOW = 1_800_000_000_000;

let server: RedisServer;
let link: ClusterRedis;
let logs: Array<{ level: string; msg: string }>;
let now: number;

const log: ClusterLog = {
  info: (_o, msg) => logs.push({ level: 'info', msg }),
  warn: (_o, msg) => logs.push({ level: 'warn', msg }),
  error: (_o, msg) => logs.push({ level: 'error', msg }),
};

beforeAll(async () => {
  server = await startRedisServer();
});
afterAll(async () => {
  await server?.stop();
});
beforeEach(async () => {
  logs = [];
  now = NOW;
  link = await connectRedis({
    addr: server.addr,
    db: 0,
    keyPrefix: uniquePrefix(),
    commandTimeoutMs: 300,
    maxBackoffMs: 50,
  });
});
afterEach(async () => {
  await link.close();
});

function obj(id: string, extra: Partial<SharedObject> = {}): SharedObject {
  return {
    id,
    kind: 'file',
    accountId: 7,
    keyId: 3,
    keyGroup: 'org-a',
    createdAt: now,
    tag: 'batch',
    ...extra,
  };
}

function directory(opts: { ttlMs?: number; recentMs?: number } = {}): RedisObjectDirectory {
  return new RedisObjectDirectory(link, { log, clock: () => now, ...opts });
}

describe('object directory', () => {
  it('finds a published object and its deletion; an unknown id is neither', async () => {
    const d = directory();
    expect(await d.publish(obj('file-1'))).toBe(true);
    expect(await d.lookup('file-1')).toEqual({ object: obj('file-1'), deletedAt: undefined });
    expect(await d.lookup('file-2')).toEqual({ object: undefined, deletedAt: undefined });
    expect(await d.publishDeleted('file-1', NOW + 5)).toBe(true);
    expect(await d.lookup('file-1')).toEqual({ object: obj('file-1'), deletedAt: NOW + 5 });
    // A fine-tuned model's id has colons; a null group and tag survive the trip.
    const model = obj('ft:gpt-4o-mini:org:x:abc', { kind: 'model', keyGroup: null, tag: null });
    await d.publish(model);
    expect((await d.lookup(model.id))?.object).toEqual(model);
  });

  it('forgets objects after their TTL, deletions only after twice as long', async () => {
    const d = directory({ ttlMs: 400 });
    await d.publish(obj('file-1'));
    await d.publishDeleted('file-1', NOW);
    await sleep(500);
    expect(await d.lookup('file-1')).toEqual({ object: undefined, deletedAt: NOW });
    await sleep(400);
    expect(await d.lookup('file-1')).toEqual({ object: undefined, deletedAt: undefined });
    // Refreshed from the store: back for another TTL, with its deletion.
    await d.refresh(obj('file-1'), NOW + 1);
    expect(await d.lookup('file-1')).toEqual({ object: obj('file-1'), deletedAt: NOW + 1 });
  });

  it("lists an account's recent objects of one kind, newest first, with their deletions", async () => {
    const d = directory({ recentMs: 1_000 });
    await d.publish(obj('file-old', { createdAt: NOW - 5_000 }));
    await d.publish(obj('file-a', { createdAt: NOW - 10 }));
    await d.publish(obj('file-b', { createdAt: NOW }));
    await d.publish(obj('file-other', { accountId: 8 }));
    await d.publish(obj('batch_x', { kind: 'batch' }));
    await d.publishDeleted('file-a', NOW + 1);
    // Kinds that are never listed (responses, the bulk of creations) keep no index.
    await d.publish(obj('resp_1', { kind: 'response', tag: null }));
    expect((await d.recent(7, 'response'))?.objects).toEqual([]);
    expect((await d.lookup('resp_1'))?.object?.kind).toBe('response');
    const recent = await d.recent(7, 'file');
    expect(recent?.objects.map((o) => o.id)).toEqual(['file-b', 'file-a']);
    expect([...(recent?.deleted ?? [])]).toEqual(['file-a']);
    // The window moves on.
    now += 2_000;
    expect((await d.recent(7, 'file'))?.objects).toEqual([]);
  });

  it('answers "could not" while Redis is down, with one warning, and works again once it is back', async () => {
    const d = directory();
    await server.kill();
    try {
      const started = Date.now();
      expect(await d.publish(obj('file-1'))).toBe(false);
      expect(await d.publishDeleted('file-1', NOW)).toBe(false);
      expect(d.pendingDeletions).toBe(1);
      expect(await d.lookup('file-1')).toBeUndefined();
      expect(await d.recent(7, 'file')).toBeUndefined();
      await d.refresh(obj('file-1'), null);
      // Fail fast: no command waits for a server that is gone.
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(logs.filter((l) => l.level === 'warn')).toHaveLength(1);
    } finally {
      await server.start();
    }
    await waitFor(async () => (await d.publish(obj('file-2'))) === true);
    expect((await d.lookup('file-2'))?.object).toEqual(obj('file-2'));
    expect(logs.filter((l) => l.level === 'info')).toHaveLength(1);
    // The deletion made meanwhile is published late: no instance sees the object live again.
    await waitFor(async () => (await d.lookup('file-1'))?.deletedAt === NOW);
    expect(d.pendingDeletions).toBe(0);
  });
});

describe('registry over the directory: fallbacks to the store', () => {
  let opened: OpenedStore;
  let store: Store;
  const silent = pino({ level: 'silent' });
  beforeEach(async () => {
    opened = await sqliteBackend.open();
    store = opened.store;
  });
  afterEach(async () => {
    await opened.dispose();
  });

  function node(d: RedisObjectDirectory) {
    const writer = new StateWriter(store.batchSink, silent, {
      flushIntervalMs: 60_000,
      statsInterval: 1_000,
    });
    const registry = new ObjectRegistry(createObjectRepository(store.db), writer, { directory: d });
    return { writer, registry };
  }

  function rec(id: string): ObjectRecord {
    return { ...obj(id), deletedAt: null, follow: null };
  }

  const stored = async (id: string) =>
    store.db.selectFrom('objects').select(['id', 'deleted_at']).where('id', '=', id).executeTakeFirst();

  it('publishes without writing the store while Redis answers', async () => {
    const a = node(directory());
    const b = node(directory());
    a.registry.add(rec('file-1'));
    await a.registry.whenShared([a.registry.peek('file-1')]);
    expect(await stored('file-1')).toBeUndefined();
    expect(await b.registry.get('file-1')).toMatchObject({ accountId: 7, keyId: 3, keyGroup: 'org-a' });
    // Nothing left to wait for: a second call has nothing pending.
    expect(a.registry.whenShared([a.registry.peek('file-1')])).toBeUndefined();
  });

  it('with Redis down, writes new objects and deletions to the store before they are answered, and looks them up there', async () => {
    const a = node(directory());
    const b = node(directory());
    // B saw the object while Redis answered (it is in its memory now).
    a.registry.add(rec('file-1'));
    await a.registry.whenShared([a.registry.peek('file-1')]);
    expect((await b.registry.get('file-1'))?.deletedAt).toBeNull();
    await server.kill();
    try {
      a.registry.add(rec('file-2'));
      await a.registry.whenShared([a.registry.peek('file-2')]);
      expect(await stored('file-2')).toMatchObject({ id: 'file-2' });
      expect(await b.registry.get('file-2')).toMatchObject({ accountId: 7, keyId: 3 });
      // A deletion on A reaches B through the store, whatever B remembered.
      const one = await a.registry.get('file-1');
      a.registry.markDeleted(one!, NOW + 9);
      await a.registry.whenShared([one]);
      expect((await b.registry.get('file-1'))?.deletedAt).toBe(NOW + 9);
      expect(await b.registry.get('file-nope')).toBeUndefined();
      // A's own unwritten rows are answered from its memory.
      a.registry.add(rec('file-3'));
      expect((await a.registry.get('file-3'))?.keyId).toBe(3);
    } finally {
      await server.start();
    }
  });

  it('reads an object the directory forgot from the store and puts it back', async () => {
    const d = directory({ ttlMs: 100 });
    const a = node(d);
    const b = node(directory({ ttlMs: 100 }));
    a.registry.add(rec('file-1'));
    await a.registry.whenShared([a.registry.peek('file-1')]);
    await a.writer.flush();
    await sleep(150);
    expect((await d.lookup('file-1'))?.object).toBeUndefined();
    expect((await b.registry.get('file-1'))?.keyGroup).toBe('org-a');
    await waitFor(async () => (await d.lookup('file-1'))?.object !== undefined);
  });
});

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > timeoutMs) throw new Error('timed out');
    await sleep(20);
  }
}
