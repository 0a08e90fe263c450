// The key repository on the embedded store: counters accumulate exactly, in chunks, for big pools.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createKeyRepository, type KeyRepository } from '../../src/keys/key-repository.js';
import { openSqliteStore, type Store } from '../../src/store/open-store.js';

let dir: string;
let store: Store;
let repo: KeyRepository;
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'proxyxai-keyrepo-'));
  store = await openSqliteStore(dir);
  repo = createKeyRepository(store.db);
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('KeyRepository.addCounters', () => {
  it('adds every key its own counts, across several chunks, and keeps the last error', async () => {
    const n = 2_345; // more than two chunks of 1,000
    const ids: number[] = [];
    for (let i = 0; i < n; i++) {
      const k = await repo.insert({
        keyHash: `h${i}`,
        ciphertext: `c${i}`,
        last4: String(i % 10_000).padStart(4, '0'),
        group: null,
        now: 1,
      });
      if (k === undefined) throw new Error('insert failed');
      ids.push(k.id);
    }
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
