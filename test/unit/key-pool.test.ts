import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { KeyPool } from '../../src/keys/key-pool.js';
import type { KeyRepository, StoredKey } from '../../src/keys/key-repository.js';
import { createSecrets } from '../../src/keys/secrets.js';

/** In-memory repository: the pool's selection logic is under test, not persistence. */
function memoryRepo(): KeyRepository {
  const rows: StoredKey[] = [];
  const hashes = new Set<string>();
  return {
    list: () => Promise.resolve([...rows]),
    get: (id) => Promise.resolve(rows.find((r) => r.id === id)),
    idOf: () => Promise.resolve(undefined),
    insert: (k) => {
      if (hashes.has(k.keyHash)) return Promise.resolve(undefined);
      hashes.add(k.keyHash);
      const row: StoredKey = {
        id: rows.length + 1,
        ciphertext: k.ciphertext,
        last4: k.last4,
        state: { kind: 'active' },
        requests: 0,
        failures: 0,
        lastError: null,
        createdAt: k.now,
        updatedAt: k.now,
        group: k.group,
      };
      rows.push(row);
      return Promise.resolve(row);
    },
    updateState: () => Promise.resolve(),
    updateHealth: () => Promise.resolve(true),
    updateGroup: () => Promise.resolve(),
    addCounters: () => Promise.resolve(),
    delete: () => Promise.resolve(),
  };
}

async function pool(n: number, now = { t: 0 }): Promise<KeyPool> {
  const p = new KeyPool(
    memoryRepo(),
    createSecrets(Buffer.alloc(32, 1)),
    { cooldownMs: 1000, ejectAfter: 3, ejectBaseMs: 1000, maxEjectMs: 8000, probeIntervalMs: 5000 },
    pino({ level: 'silent' }),
    () => now.t,
  );
  for (let i = 1; i <= n; i++) await p.add(`sk-test-${i}`);
  return p;
}

describe('KeyPool selection', () => {
  it('goes round-robin over usable keys', async () => {
    const p = await pool(3);
    const ids = Array.from({ length: 6 }, () => p.pick(new Set())?.id);
    expect(ids).toEqual([1, 2, 3, 1, 2, 3]);
  });

  it('skips keys already tried for this request', async () => {
    const p = await pool(3);
    expect(p.pick(new Set([1, 2]))?.id).toBe(3);
    expect(p.pick(new Set([1, 2, 3]))).toBeUndefined();
  });

  it('skips disabled and cooling keys, and falls back to the soonest-recovering cooling key when nothing else is left', async () => {
    const now = { t: 0 };
    const p = await pool(3, now);
    const k1 = p.pick(new Set())!;
    p.report(k1, { kind: 'key-invalid', reason: 'invalid_api_key' });
    const k2 = p.pick(new Set())!;
    p.report(k2, { kind: 'rate-limited', reason: 'r', retryAfterMs: 5000 });
    expect(p.pick(new Set())?.id).toBe(3);
    expect(p.pick(new Set([3]))?.id).toBe(2); // panic mode: cooling key rather than nothing
    now.t = 6000;
    expect(new Set([p.pick(new Set())?.id, p.pick(new Set())?.id])).toEqual(new Set([2, 3]));
  });

  it('hands a parked key a probe once the probe interval passed', async () => {
    const now = { t: 0 };
    const p = await pool(2, now);
    p.report(p.pick(new Set())!, { kind: 'key-quota', reason: 'insufficient_quota' });
    expect([1, 2, 3].map(() => p.pick(new Set())?.id)).toEqual([2, 2, 2]);
    now.t = 5000;
    const ids = [1, 2, 3, 4].map(() => p.pick(new Set())?.id);
    expect(ids).toContain(1);
  });

  it('lists keys masked, never the secret', async () => {
    const p = await pool(1);
    expect(JSON.stringify(p.list())).not.toContain('sk-test-1');
    expect(p.list()[0]?.masked).toBe('sk-...st-1');
  });

  it('rejects a duplicate key', async () => {
    const p = await pool(1);
    expect(await p.add('sk-test-1')).toEqual({ ok: false, reason: 'duplicate' });
  });

  it('serves a pinned request only with the key that holds its objects, or a key of that key’s group', async () => {
    const now = { t: 0 };
    const p = await pool(4, now);
    await p.setGroup(1, 'org-a');
    await p.setGroup(3, 'org-a');
    const pinnedToKey2 = { pins: [{ keyId: 2, group: null }] };
    expect([1, 2, 3].map(() => p.pickPinned(pinnedToKey2, new Set())?.id)).toEqual([2, 2, 2]);
    expect(p.pickPinned(pinnedToKey2, new Set([2]))).toBeUndefined();
    const groupA = { pins: [{ keyId: 1, group: 'org-a' }] };
    expect(new Set([1, 2, 3, 4].map(() => p.pickPinned(groupA, new Set())?.id))).toEqual(new Set([1, 3]));
    // Two objects of one group and a third one pinned to key 3: only key 3 satisfies all.
    const both = { pins: [...groupA.pins, { keyId: 3, group: null }] };
    expect(p.pickPinned(both, new Set())?.id).toBe(3);
    // A disabled key can no longer reach the organisation; a cooling or parked one still can.
    p.report(p.pickPinned({ pins: [{ keyId: 3, group: null }] }, new Set())!, {
      kind: 'key-invalid',
      reason: 'invalid_api_key',
    });
    expect(p.pickPinned(both, new Set())).toBeUndefined();
    expect(p.pickPinned(groupA, new Set())?.id).toBe(1);
    p.report(p.pickPinned(pinnedToKey2, new Set())!, { kind: 'key-quota', reason: 'insufficient_quota' });
    expect(p.pickPinned(pinnedToKey2, new Set())?.id).toBe(2);
  });
});
