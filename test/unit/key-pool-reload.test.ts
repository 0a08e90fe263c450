// The pool as a cache of the store shared by several instances: reloads in place (the key object
// and its counters kept), removal while a request holds a key, reconciliation, announcements after
// each write, and the races between a reload and this instance's own writes.
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { KeyPool, type KeyPoolOptions } from '../../src/keys/key-pool.js';
import type { KeyRepository, KeyStateWrite, StoredKey } from '../../src/keys/key-repository.js';
import type { KeyState } from '../../src/keys/key-state.js';
import { createSecrets, type Secrets } from '../../src/keys/secrets.js';
import type { UpstreamOutcome } from '../../src/upstream/classify-outcome.js';

interface Row {
  id: number;
  hash: string;
  ciphertext: string;
  last4: string;
  state: KeyState;
  requests: number;
  failures: number;
  lastError: string | null;
  createdAt: number;
  updatedAt: number;
  group: string | null;
}

/** A store several pools share, with gates to hold an operation while a test acts. */
class MemoryStore {
  readonly rows = new Map<number, Row>();
  private nextId = 1;
  /** Operations in the order they ran (for "written before announced"). */
  readonly journal: string[] = [];
  private readonly gates = new Map<string, Promise<void>>();

  /** Holds every `op` until the returned release is called. */
  hold(op: 'get' | 'list' | 'updateHealth'): () => void {
    let release!: () => void;
    this.gates.set(
      op,
      new Promise<void>((resolve) => {
        release = () => {
          this.gates.delete(op);
          resolve();
        };
      }),
    );
    return release;
  }

  private async gate(op: string): Promise<void> {
    await this.gates.get(op);
  }

  setState(id: number, state: KeyState): void {
    const row = this.rows.get(id);
    if (row !== undefined) row.state = state;
  }

  repo(): KeyRepository {
    const stored = (r: Row): StoredKey => ({
      id: r.id,
      ciphertext: r.ciphertext,
      last4: r.last4,
      state: r.state,
      requests: r.requests,
      failures: r.failures,
      lastError: r.lastError,
      createdAt: r.createdAt,
      updatedAt: r.updatedAt,
      group: r.group,
    });
    const toState = (s: KeyStateWrite): KeyState => {
      switch (s.status) {
        case 'active':
          return { kind: 'active' };
        case 'cooling':
          return { kind: 'cooling', until: s.stateUntil ?? 0, reason: s.reason ?? '' };
        case 'parked':
          return { kind: 'parked', probeAt: s.stateUntil ?? 0, reason: s.reason ?? '' };
        case 'disabled':
          return { kind: 'disabled', at: s.disabledAt ?? 0, reason: s.reason ?? '' };
      }
    };
    return {
      list: async () => {
        const snapshot = [...this.rows.values()].map(stored);
        await this.gate('list');
        return snapshot;
      },
      get: async (id) => {
        const row = this.rows.get(id);
        const snapshot = row === undefined ? undefined : stored(row);
        await this.gate('get');
        return snapshot;
      },
      idOf: (hash) => Promise.resolve([...this.rows.values()].find((r) => r.hash === hash)?.id),
      insert: (k) => {
        if ([...this.rows.values()].some((r) => r.hash === k.keyHash)) return Promise.resolve(undefined);
        const row: Row = {
          id: this.nextId++,
          hash: k.keyHash,
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
        this.rows.set(row.id, row);
        this.journal.push(`insert ${row.id}`);
        return Promise.resolve(stored(row));
      },
      updateState: (id, s) => {
        const row = this.rows.get(id);
        if (row !== undefined) row.state = toState(s);
        this.journal.push(`state ${id} ${s.status}`);
        return Promise.resolve();
      },
      updateHealth: async (id, s) => {
        await this.gate('updateHealth');
        const row = this.rows.get(id);
        if (row === undefined || row.state.kind === 'disabled') return false;
        row.state = toState(s);
        this.journal.push(`health ${id} ${s.status}`);
        return true;
      },
      updateGroup: (id, group) => {
        const row = this.rows.get(id);
        if (row !== undefined) row.group = group;
        this.journal.push(`group ${id} ${group}`);
        return Promise.resolve();
      },
      addCounters: (batch) => {
        for (const b of batch) {
          const row = this.rows.get(b.id);
          if (row === undefined) continue;
          row.requests += b.requests;
          row.failures += b.failures;
        }
        this.journal.push(`counters ${batch.map((b) => b.id).join(',')}`);
        return Promise.resolve();
      },
      delete: (id) => {
        this.rows.delete(id);
        this.journal.push(`delete ${id}`);
        return Promise.resolve();
      },
    };
  }
}

const policy = {
  cooldownMs: 1000,
  ejectAfter: 3,
  ejectBaseMs: 1000,
  maxEjectMs: 8000,
  probeIntervalMs: 5000,
};

/** Secrets that count decryptions. */
function countingSecrets(): Secrets & { decrypted: number } {
  const inner = createSecrets(Buffer.alloc(32, 7));
  const s = {
    decrypted: 0,
    encrypt: (p: string) => inner.encrypt(p),
    decrypt: (c: string) => {
      s.decrypted++;
      return inner.decrypt(c);
    },
    hash: (p: string) => inner.hash(p),
    equal: (a: string, b: string) => inner.equal(a, b),
  };
  return s;
}

interface Instance {
  pool: KeyPool;
  secrets: Secrets & { decrypted: number };
  announced: number[];
  logs: Array<{ level: number; msg: string }>;
}

const now = { t: 1_000_000 };

function instance(store: MemoryStore, options: KeyPoolOptions & { record?: boolean } = {}): Instance {
  const announced: number[] = [];
  const logs: Instance['logs'] = [];
  const log = pino(
    { level: 'info' },
    {
      write: (line: string) => {
        const { level, msg } = JSON.parse(line) as { level: number; msg: string };
        logs.push({ level, msg });
      },
    },
  );
  const secrets = countingSecrets();
  const pool = new KeyPool(store.repo(), secrets, policy, log, () => now.t, {
    announce:
      options.announce ??
      ((id) => {
        announced.push(id);
        store.journal.push(`announce ${id}`);
        return Promise.resolve();
      }),
    ...(options.announceRetryMs !== undefined && { announceRetryMs: options.announceRetryMs }),
  });
  return { pool, secrets, announced, logs };
}

const secret = (n: number): string => `sk-reload-test-${String(n).padStart(4, '0')}`;
const ok: UpstreamOutcome = { kind: 'ok' };
const invalid: UpstreamOutcome = { kind: 'key-invalid', reason: 'invalid_api_key' };

/** Every id `pick` hands out over `n` calls. */
function picked(pool: KeyPool, n = 20): Set<number> {
  const out = new Set<number>();
  for (let i = 0; i < n; i++) {
    const k = pool.pick(new Set());
    if (k !== undefined) out.add(k.id);
  }
  return out;
}

async function twoInstances(keys: number): Promise<{ store: MemoryStore; a: Instance; b: Instance }> {
  const store = new MemoryStore();
  const a = instance(store);
  const b = instance(store);
  for (let i = 1; i <= keys; i++) await a.pool.add(secret(i));
  await b.pool.load();
  return { store, a, b };
}

describe('KeyPool.reloadKey', () => {
  it('takes in a key new here (decrypting it once), and a re-read keeps its object', async () => {
    const { store, a, b } = await twoInstances(1);
    expect(b.secrets.decrypted).toBe(1);
    const added = await a.pool.add(secret(2));
    expect(added.ok).toBe(true);
    expect(b.pool.get(2)).toBeUndefined();
    await b.pool.reloadKey(2);
    expect(b.pool.get(2)?.status).toBe('active');
    expect(picked(b.pool)).toEqual(new Set([1, 2]));
    const held = b.pool.pick(new Set([1]))!;
    expect(held.secret).toBe(secret(2));
    await b.pool.reloadKey(2);
    await b.pool.reloadKey(2);
    expect(b.pool.pick(new Set([1]))).toBe(held);
    expect(b.secrets.decrypted).toBe(2);
    expect(store.rows.size).toBe(2);
  });

  it('adopts the stored state and group in place, keeping the counters of this instance', async () => {
    const { store, a, b } = await twoInstances(2);
    const held = b.pool.pick(new Set([2]))!;
    for (let i = 0; i < 5; i++) b.pool.report(held, ok);
    a.pool.report(a.pool.pick(new Set([2]))!, ok);
    await a.pool.flushCounters();
    await a.pool.setGroup(1, 'org-a');
    await a.pool.setEnabled(1, false);
    await b.pool.reloadKey(1);
    expect(b.pool.pick(new Set([2]))).toBeUndefined();
    expect(held.health.state.kind).toBe('disabled');
    expect(held.group).toBe('org-a');
    // 5 here not yet written, 1 from A written: the view counts both, and B writes only its own.
    expect(b.pool.get(1)?.requests).toBe(6);
    expect(held.pendingRequests).toBe(5);
    await b.pool.flushCounters();
    expect(store.rows.get(1)?.requests).toBe(6);
    await a.pool.setEnabled(1, true);
    await b.pool.reloadKey(1);
    expect(b.pool.pick(new Set([2]))).toBe(held);
    expect(held.health).toEqual({ state: { kind: 'active' }, consecutiveFailures: 0, ejections: 0 });
    expect(b.secrets.decrypted).toBe(2);
  });

  it('removes a key deleted elsewhere while a request holds it; the holder finishes quietly', async () => {
    const { store, a, b } = await twoInstances(3);
    const held = b.pool.pick(new Set([1, 3]))!;
    expect(held.id).toBe(2);
    expect(await a.pool.remove(2)).toBe(true);
    await b.pool.reloadKey(2);
    expect(b.pool.size).toBe(2);
    expect(b.pool.get(2)).toBeUndefined();
    expect(picked(b.pool)).toEqual(new Set([1, 3]));
    // The request that held it ends: nothing is written for a key no longer in the pool.
    b.pool.report(held, invalid);
    b.pool.report(held, ok);
    await b.pool.settled();
    await b.pool.flushCounters();
    expect(store.journal.filter((j) => / 2( |$)/.test(j) && !j.startsWith('announce'))).toEqual([
      'insert 2',
      'delete 2',
    ]);
    expect(store.rows.has(2)).toBe(false);
  });

  it('keeps the round-robin order over the keys that remain', async () => {
    const { a, b } = await twoInstances(4);
    expect([1, 2, 3].map(() => b.pool.pick(new Set())?.id)).toEqual([1, 2, 3]);
    await a.pool.remove(1);
    await b.pool.reloadKey(1);
    expect([1, 2, 3, 4].map(() => b.pool.pick(new Set())?.id)).toEqual([4, 2, 3, 4]);
  });

  it('keeps the keys in id order whatever order they arrive in', async () => {
    const { a, b } = await twoInstances(1);
    await a.pool.add(secret(2));
    await a.pool.add(secret(3));
    expect(b.pool.pick(new Set())?.id).toBe(1);
    await b.pool.reloadKey(3);
    await b.pool.reloadKey(2);
    expect(b.pool.list().map((k) => k.id)).toEqual([1, 2, 3]);
    expect([1, 2, 3, 4].map(() => b.pool.pick(new Set())?.id)).toEqual([1, 2, 3, 1]);
  });

  it('answers nothing for an id that was never stored', async () => {
    const { b } = await twoInstances(1);
    await b.pool.reloadKey(999);
    expect(b.pool.size).toBe(1);
    expect(await b.pool.setEnabled(999, false)).toBeUndefined();
    expect(await b.pool.remove(999)).toBe(false);
  });
});

describe('KeyPool.reloadKeys', () => {
  it('reconciles the whole pool in place: adds, removes, states, groups; decrypts only new keys', async () => {
    const { store, a, b } = await twoInstances(4);
    const before = new Map(
      [1, 2, 3].map((id) => [id, b.pool.pick(new Set([1, 2, 3, 4].filter((x) => x !== id)))!]),
    );
    b.pool.report(before.get(3)!, ok);
    await a.pool.add(secret(5));
    await a.pool.add(secret(6));
    await a.pool.remove(4);
    await a.pool.setEnabled(1, false);
    await a.pool.setGroup(2, 'org-b');
    store.setState(3, { kind: 'cooling', until: now.t + 10_000, reason: 'rate_limit_exceeded' });
    const decrypted = b.secrets.decrypted;
    await b.pool.reloadKeys();
    expect(b.secrets.decrypted - decrypted).toBe(2);
    expect(b.pool.list().map((k) => [k.id, k.status, k.group])).toEqual([
      [1, 'disabled', null],
      [2, 'active', 'org-b'],
      [3, 'cooling', null],
      [5, 'active', null],
      [6, 'active', null],
    ]);
    for (const [id, key] of before)
      expect(b.pool.pick(new Set([1, 2, 3, 5, 6].filter((x) => x !== id)))).toBe(id === 1 ? undefined : key);
    expect(before.get(3)!.pendingRequests).toBe(1);
    expect(b.logs.some((l) => l.msg === 'upstream key pool reconciled with the store')).toBe(true);
  });

  it('does not remove a key added here while it read, nor bring back one removed here meanwhile', async () => {
    const { store, b } = await twoInstances(2);
    const release = store.hold('list');
    const reconciling = b.pool.reloadKeys();
    await b.pool.add(secret(3));
    await b.pool.remove(1);
    release();
    await reconciling;
    expect(b.pool.list().map((k) => k.id)).toEqual([2, 3]);
  });
});

describe('KeyPool announcements', () => {
  it('announces each admin change after it is written, and answers once announced', async () => {
    const store = new MemoryStore();
    const a = instance(store);
    await a.pool.add(secret(1));
    await a.pool.update(1, { enabled: false, group: 'org-a' });
    await a.pool.setEnabled(1, true);
    await a.pool.remove(1);
    expect(store.journal).toEqual([
      'insert 1',
      'announce 1',
      'group 1 org-a',
      'state 1 disabled',
      'announce 1',
      'state 1 active',
      'announce 1',
      'delete 1',
      'announce 1',
    ]);
  });

  it('announces invalid, out of quota and rate limited keys, but not successes nor ejections', async () => {
    const store = new MemoryStore();
    const a = instance(store);
    for (let i = 1; i <= 5; i++) await a.pool.add(secret(i));
    a.announced.length = 0;
    const key = (id: number) => a.pool.pick(new Set([1, 2, 3, 4, 5].filter((x) => x !== id)))!;
    for (let i = 0; i < 100; i++) a.pool.report(key(1), ok);
    for (let i = 0; i < 3; i++) a.pool.report(key(2), { kind: 'transient', reason: '502' });
    await a.pool.settled();
    expect(a.pool.get(2)?.status).toBe('cooling');
    expect(store.rows.get(2)?.state.kind).toBe('cooling');
    a.pool.report(key(3), invalid);
    a.pool.report(key(4), { kind: 'key-quota', reason: 'insufficient_quota' });
    a.pool.report(key(5), { kind: 'rate-limited', reason: 'rate_limit_exceeded', retryAfterMs: 5000 });
    await a.pool.settled();
    expect(a.announced.sort()).toEqual([3, 4, 5]);
    expect(store.journal.slice(-6)).toEqual(
      expect.arrayContaining(['health 3 disabled', 'health 4 parked', 'health 5 cooling']),
    );
    for (const id of [3, 4, 5])
      expect(store.journal.indexOf(`health ${id} ${a.pool.get(id)!.status}`)).toBeLessThan(
        store.journal.lastIndexOf(`announce ${id}`),
      );
  });

  it('sends a failed announcement again until it goes out, and stops on close', async () => {
    const store = new MemoryStore();
    let failures = 2;
    const sent: number[] = [];
    const a = instance(store, {
      announceRetryMs: 10,
      announce: (id) => {
        if (failures-- > 0) return Promise.reject(new Error('redis down'));
        sent.push(id);
        return Promise.resolve();
      },
    });
    const added = await a.pool.add(secret(1));
    expect(added.ok).toBe(true);
    await waitFor(() => sent.length === 1);
    expect(sent).toEqual([1]);
    expect(a.logs.filter((l) => l.msg.startsWith('could not announce'))).toHaveLength(2);

    failures = Number.POSITIVE_INFINITY;
    await a.pool.setEnabled(1, false);
    await a.pool.close();
    const calls = a.logs.length;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(a.logs.length).toBe(calls);
  });
});

describe('health shared through the store', () => {
  it('a key disabled in the store is never written back to another state; the pool adopts it', async () => {
    const { store, a, b } = await twoInstances(2);
    await a.pool.setEnabled(1, false);
    // B has not heard yet: its request on key 1 is answered 429.
    const held = b.pool.pick(new Set([2]))!;
    b.pool.report(held, { kind: 'rate-limited', reason: 'rate_limit_exceeded', retryAfterMs: 1000 });
    await b.pool.settled();
    expect(store.rows.get(1)?.state).toMatchObject({ kind: 'disabled', reason: 'disabled by admin' });
    expect(held.health.state).toMatchObject({ kind: 'disabled', reason: 'disabled by admin' });
    expect(b.announced).toEqual([]);
  });

  it('a late success does not enable a key that was disabled meanwhile', async () => {
    const { a, b } = await twoInstances(2);
    const held = b.pool.pick(new Set([2]))!;
    await a.pool.setEnabled(1, false);
    await b.pool.reloadKey(1);
    b.pool.report(held, ok);
    expect(held.health.state.kind).toBe('disabled');
  });

  it('a reload does not take a state older than a write of this instance still on its way', async () => {
    const { store, b } = await twoInstances(2);
    const held = b.pool.pick(new Set([2]))!;
    // The reload reads the key as active, and the 401 arrives before that read returns.
    const releaseRead = store.hold('get');
    const reloading = b.pool.reloadKey(1);
    const releaseWrite = store.hold('updateHealth');
    b.pool.report(held, invalid);
    releaseRead();
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(held.health.state.kind).toBe('disabled');
    releaseWrite();
    await reloading;
    await b.pool.settled();
    expect(held.health.state.kind).toBe('disabled');
    expect(store.rows.get(1)?.state.kind).toBe('disabled');
  });

  it('a reload read before a newer reload was applied leaves the key alone', async () => {
    const { store, a, b } = await twoInstances(1);
    const release = store.hold('get');
    const stale = b.pool.reloadKey(1);
    await a.pool.setEnabled(1, false);
    // A reconcile that reads now (after the change) and applies first wins over the older read.
    await b.pool.reloadKeys();
    expect(b.pool.get(1)?.status).toBe('disabled');
    release();
    await stale;
    expect(b.pool.get(1)?.status).toBe('disabled');
  });
});

describe('adding a key another instance already stored', () => {
  it('is a quiet duplicate that takes the stored key into this pool', async () => {
    const { store, a, b } = await twoInstances(1);
    await a.pool.add(secret(2));
    expect(b.pool.get(2)).toBeUndefined();
    expect(await b.pool.add(secret(2))).toEqual({ ok: false, reason: 'duplicate' });
    expect(b.pool.get(2)?.status).toBe('active');
    expect(store.rows.size).toBe(2);
    expect(b.logs.filter((l) => l.level >= 40)).toEqual([]);
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 2_000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
