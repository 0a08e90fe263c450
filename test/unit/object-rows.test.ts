// How a batch's object row meets the stored one, on every backend and through every sink (the
// delta sink of several instances too): several instances may write rows of one object from their
// own view of it, so the stored row only moves forward. A deletion is never undone, a settled
// follow never reopens, an open follow is not cleared by a row that never knew it, and the owner
// of a follow changes only through a claim.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Batch, BatchSink, ObjectRow } from '../../src/store/batch-sink.js';
import type { Store } from '../../src/store/store.js';
import { sinksOf, storeBackends, type OpenedStore } from '../support/stores.js';

function row(extra: Partial<ObjectRow> = {}): ObjectRow {
  return {
    id: 'batch_1',
    kind: 'batch',
    account_id: 7,
    key_id: 3,
    key_group: null,
    tag: null,
    created_at: 100,
    deleted_at: null,
    follow: null,
    reserved: 0,
    request_id: null,
    model: null,
    price_percent: null,
    follow_owner: null,
    ...extra,
  };
}

const OPEN = { follow: 'open', reserved: 1234, request_id: 'batch_1', price_percent: 50 } as const;

function batch(objects: ObjectRow[]): Batch {
  return { accounts: [], cards: new Map(), deleted: [], ledger: [], usage: [], daily: [], objects };
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

  const sinks = (): Array<[string, (s: Store) => BatchSink]> => [
    ...sinksOf(),
    ...(backend.name === 'postgres'
      ? ([['delta sink', (s: Store) => s.shared!.deltaSink('instance-a')]] as Array<
          [string, (s: Store) => BatchSink]
        >)
      : []),
  ];

  it.each(sinks())('%s: object rows only move forward', async (_name, makeSink) => {
    const sink = makeSink(store);
    const stored = () =>
      store.db.selectFrom('objects').selectAll().where('id', '=', 'batch_1').executeTakeFirst();
    const write = (r: Partial<ObjectRow>) => sink.write(batch([row(r)]));
    await write({});
    await write({ ...OPEN, follow_owner: 'instance-a' });
    expect(await stored()).toMatchObject({ follow: 'open', reserved: 1234, follow_owner: 'instance-a' });
    // A row from a view that never saw the follow (another instance deleting the object).
    await write({ deleted_at: 500 });
    expect(await stored()).toMatchObject({
      ...OPEN,
      deleted_at: 500,
      follow_owner: 'instance-a',
    });
    // A claim moves the owner; the old owner's rows no longer do.
    await store.db.updateTable('objects').set({ follow_owner: 'instance-b' }).execute();
    await write({ ...OPEN, follow_owner: 'instance-a' });
    expect(await stored()).toMatchObject({ follow_owner: 'instance-b', deleted_at: 500 });
    // Settled: a late "open" from anyone does not reopen it.
    await write({ follow: 'done' });
    await write({ ...OPEN, follow_owner: 'instance-a' });
    expect(await stored()).toMatchObject({
      follow: 'done',
      reserved: 0,
      request_id: null,
      deleted_at: 500,
      follow_owner: 'instance-b',
    });
    // The rest of the row is written as it comes.
    await write({ follow: 'done', tag: 'batch', key_group: 'org-a' });
    expect(await stored()).toMatchObject({ tag: 'batch', key_group: 'org-a' });
  });
});
