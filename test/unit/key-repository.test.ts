// The key repository on every store backend: counters accumulate exactly, in chunks, for big pools.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createKeyRepository, type KeyRepository } from '../../src/keys/key-repository.js';
import { storeBackends, type OpenedStore } from '../support/stores.js';

describe.each(storeBackends())('$name store', (backend) => {
  let opened: OpenedStore;
  let repo: KeyRepository;
  beforeEach(async () => {
    opened = await backend.open();
    repo = createKeyRepository(opened.store.db);
  });
  afterEach(async () => {
    await opened.dispose();
  });

  describe('KeyRepository.addCounters', () => {
    it('adds every key its own counts, across several chunks, and keeps the last error', async () => {
      const n = 2_345; // more than two chunks of 1,000
      // The pool is stored in one transaction (inserting key by key would be one commit each,
      // seconds on a server store); the counters are what this test is about.
      const ids = await opened.store.db.transaction().execute(async (trx) => {
        const out: number[] = [];
        for (let i = 0; i < n; i++) {
          const k = await createKeyRepository(trx).insert({
            keyHash: `h${i}`,
            ciphertext: `c${i}`,
            last4: String(i % 10_000).padStart(4, '0'),
            group: null,
            now: 1,
          });
          if (k === undefined) throw new Error('insert failed');
          out.push(k.id);
        }
        return out;
      });
      const batch = (round: number) =>
        ids.map((id, i) => ({
          id,
          requests: i + round,
          failures: i % 3,
          lastError: i % 2 === 0 ? null : `err ${i} r${round}`,
        }));
      await repo.addCounters(batch(1), 100);
      await repo.addCounters(batch(2), 200);
      const rows = await repo.list();
      expect(rows).toHaveLength(n);
      rows.forEach((r, i) => {
        expect(r.requests).toBe(2 * i + 3);
        expect(r.failures).toBe(2 * (i % 3));
        expect(r.lastError).toBe(i % 2 === 0 ? null : `err ${i} r2`);
        expect(r.updatedAt).toBe(200);
      });
    });

    it('leaves keys outside the batch alone', async () => {
      const a = await repo.insert({ keyHash: 'a', ciphertext: 'ca', last4: 'aaaa', group: null, now: 1 });
      await repo.insert({ keyHash: 'b', ciphertext: 'cb', last4: 'bbbb', group: null, now: 1 });
      await repo.addCounters([{ id: a!.id, requests: 5, failures: 1, lastError: 'x' }], 9);
      const [ra, rb] = await repo.list();
      expect([ra?.requests, ra?.failures, ra?.lastError, ra?.updatedAt]).toEqual([5, 1, 'x', 9]);
      expect([rb?.requests, rb?.failures, rb?.lastError, rb?.updatedAt]).toEqual([0, 0, null, 1]);
    });
  });

  it('keeps state, group and a NUL-free last error across a reopen', async () => {
    const k = await repo.insert({ keyHash: 'g', ciphertext: 'cg', last4: 'gggg', group: 'org-a', now: 1 });
    expect(await repo.insert({ keyHash: 'g', ciphertext: 'other', last4: 'gggg', group: null, now: 2 })).toBe(
      undefined,
    );
    await repo.updateState(k!.id, {
      status: 'disabled',
      reason: 'invalid_api_key',
      stateUntil: null,
      disabledAt: 1_700_000_000_123,
      lastError: 'bad\u0000key',
      updatedAt: 5,
    });
    await repo.updateGroup(k!.id, 'org-b', 6);
    const again = createKeyRepository((await opened.reopen()).db);
    expect(await again.list()).toEqual([
      {
        id: k!.id,
        ciphertext: 'cg',
        last4: 'gggg',
        state: { kind: 'disabled', reason: 'invalid_api_key', at: 1_700_000_000_123 },
        requests: 0,
        failures: 0,
        lastError: 'bad\uFFFDkey',
        createdAt: 1,
        updatedAt: 6,
        group: 'org-b',
      },
    ]);
    await again.delete(k!.id);
    expect(await again.list()).toEqual([]);
  });
});
