// The object registry on a real store, on every backend and through both batch sinks: records
// survive a reopen, pages follow OpenAI's cursor semantics, the cache never drops a record the
// writer has not stored.
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StateWriter } from '../../src/store/state-writer.js';
import type { Store } from '../../src/store/store.js';
import { ObjectRegistry, type ObjectRecord } from '../../src/tenancy/object-registry.js';
import { createObjectRepository } from '../../src/tenancy/object-repository.js';
import { sinksOf, storeBackends, type OpenedStore } from '../support/stores.js';

function rec(
  id: string,
  accountId: number,
  createdAt: number,
  extra: Partial<ObjectRecord> = {},
): ObjectRecord {
  return {
    id,
    kind: 'file',
    accountId,
    keyId: 1,
    keyGroup: null,
    createdAt,
    tag: null,
    deletedAt: null,
    follow: null,
    ...extra,
  };
}

describe.each(storeBackends())('$name store', (backend) => {
  let opened: OpenedStore;
  let store: Store;
  beforeEach(async () => {
    opened = await backend.open();
    store = opened.store;
  });
  afterEach(async () => {
    await opened.dispose();
  });

  describe.each(sinksOf())('%s', (_name, makeSink) => {
    let writer: StateWriter;
    let registry: ObjectRegistry;
    beforeEach(() => {
      writer = new StateWriter(makeSink(store), pino({ level: 'silent' }), {
        flushIntervalMs: 1000,
        statsInterval: 1000,
      });
      registry = new ObjectRegistry(createObjectRepository(store.db), writer);
    });

    it('stores records with their owner, key, group, deletion and follow state', async () => {
      registry.add(rec('file-1', 7, 100, { keyId: 3, keyGroup: 'org-a', tag: 'batch' }));
      const batch = rec('batch_1', 7, 200, { kind: 'batch' });
      registry.add(batch);
      registry.setFollow(batch, {
        state: 'open',
        reserved: 1234,
        requestId: 'batch_1',
        model: null,
        pricePercent: 50,
      });
      registry.markDeleted(rec('file-2', 8, 300), 400);
      await writer.flush();
      const fresh = new ObjectRegistry(createObjectRepository(store.db), writer);
      expect(await fresh.get('file-1')).toEqual(
        rec('file-1', 7, 100, { keyId: 3, keyGroup: 'org-a', tag: 'batch' }),
      );
      expect(await fresh.get('file-2')).toMatchObject({ accountId: 8, deletedAt: 400 });
      expect(await fresh.get('nope')).toBeUndefined();
      expect(await fresh.openFollows()).toEqual([
        {
          ...batch,
          follow: { state: 'open', reserved: 1234, requestId: 'batch_1', model: null, pricePercent: 50 },
        },
      ]);
      registry.setFollow(batch, { state: 'done' });
      await writer.flush();
      expect(await new ObjectRegistry(createObjectRepository(store.db), writer).openFollows()).toEqual([]);
    });

    it('pages one account’s live objects of a kind with after, before, order and the tag filter', async () => {
      for (let i = 1; i <= 6; i++)
        registry.add(rec(`file-${i}`, 1, i * 10, { tag: i % 2 === 0 ? 'even' : 'odd' }));
      registry.add(rec('file-other', 2, 35));
      registry.add(rec('batch_x', 1, 36, { kind: 'batch' }));
      const gone = rec('file-gone', 1, 37);
      registry.add(gone);
      registry.markDeleted(gone, 38);
      const ids = async (q: Partial<Parameters<ObjectRegistry['page']>[0]>) =>
        (await registry.page({ accountId: 1, kind: 'file', order: 'desc', limit: 10, ...q })).map(
          (r) => r.id,
        );
      // Queued records are listed too: the page waits for the writer.
      expect(await ids({})).toEqual(['file-6', 'file-5', 'file-4', 'file-3', 'file-2', 'file-1']);
      expect(await ids({ order: 'asc', limit: 2 })).toEqual(['file-1', 'file-2']);
      const f4 = await registry.get('file-4');
      expect(await ids({ after: f4, limit: 2 })).toEqual(['file-3', 'file-2']);
      expect(await ids({ before: f4, limit: 1 })).toEqual(['file-5']);
      expect(await ids({ before: f4, order: 'asc', limit: 5 })).toEqual(['file-1', 'file-2', 'file-3']);
      expect(await ids({ tag: 'even' })).toEqual(['file-6', 'file-4', 'file-2']);
    });

    it('keeps records the writer has not stored yet when the cache shrinks', async () => {
      const small = new ObjectRegistry(createObjectRepository(store.db), writer, 3);
      for (let i = 0; i < 10; i++) small.add(rec(`file-${i}`, 1, i));
      // Nothing is in the store yet, so every record must still be answered (from memory).
      for (let i = 0; i < 10; i++) expect((await small.get(`file-${i}`))?.accountId).toBe(1);
      await writer.flush();
      small.add(rec('file-new', 1, 99));
      for (let i = 0; i < 10; i++) expect((await small.get(`file-${i}`))?.accountId).toBe(1);
    });

    it('orders ids created in the same millisecond bytewise, and keeps every record across a reopen', async () => {
      // Byte order, as SQLite's BINARY: upper case before lower, '-' before digits, '1' before '9'.
      const same = ['file-a', 'file-B', 'file-10', 'file-9', 'file--'];
      for (const id of same) registry.add(rec(id, 3, 500, { tag: 'x' }));
      await writer.flush();
      const reopened = await opened.reopen();
      const fresh = new ObjectRegistry(createObjectRepository(reopened.db), writer);
      const page = await fresh.page({ accountId: 3, kind: 'file', order: 'asc', limit: 10, tag: 'x' });
      expect(page.map((r) => r.id)).toEqual(['file--', 'file-10', 'file-9', 'file-B', 'file-a']);
      expect(await fresh.get('file-9')).toEqual(rec('file-9', 3, 500, { tag: 'x' }));
      // A NUL never reaches a query: unknown id, empty filter.
      expect(await fresh.get('file-\u0000')).toBeUndefined();
      expect(
        await fresh.page({ accountId: 3, kind: 'file', order: 'asc', limit: 10, tag: '\u0000' }),
      ).toEqual([]);
    });
  });
});
