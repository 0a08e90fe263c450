/**
 * The upstream key pool: every key decrypted in memory, round-robin selection over usable keys,
 * health transitions after each attempt, and persistence of state changes and counters off the
 * hot path (state changes are written asynchronously, counters in periodic batches).
 */
import type { Logger } from 'pino';
import type { UpstreamOutcome } from '../upstream/classify-outcome.js';
import { isUsable, nextHealth, type HealthPolicy, type KeyHealth, type KeyState } from './key-state.js';
import type { KeyRepository, StoredKey } from './key-repository.js';
import type { Secrets } from './secrets.js';

export interface PoolKey {
  readonly id: number;
  readonly secret: string;
  readonly last4: string;
  readonly createdAt: number;
  /** Upstream organisation group (objects it holds may be served by any key of the group). */
  group: string | null;
  health: KeyHealth;
  requests: number;
  failures: number;
  lastError: string | null;
  updatedAt: number;
  /** Counter deltas not yet written to the store. */
  pendingRequests: number;
  pendingFailures: number;
}

/** What the admin API shows of a key: never the secret. */
export interface KeyView {
  readonly id: number;
  readonly masked: string;
  readonly status: KeyState['kind'];
  readonly reason: string | null;
  readonly until: number | null;
  readonly lastError: string | null;
  readonly requests: number;
  readonly failures: number;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly group: string | null;
}

/**
 * The keys that may serve a request naming objects: the key that holds them or, when that key
 * has a group, any key of its group. Every object named must allow the key.
 */
export interface KeyAffinity {
  readonly pins: ReadonlyArray<{ readonly keyId: number; readonly group: string | null }>;
}

export type AddKeyResult = { ok: true; key: KeyView } | { ok: false; reason: 'duplicate' };

export class KeyPool {
  private keys: PoolKey[] = [];
  private cursor = 0;
  private readonly pendingWrites = new Set<Promise<void>>();

  constructor(
    private readonly repo: KeyRepository,
    private readonly secrets: Secrets,
    private readonly policy: HealthPolicy,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Loads every stored key into memory (decrypting it). */
  async load(): Promise<void> {
    const rows = await this.repo.list();
    this.keys = rows.map((row) => this.fromStored(row));
  }

  get size(): number {
    return this.keys.length;
  }

  usableCount(now = this.clock()): number {
    let n = 0;
    for (const k of this.keys) if (isUsable(k.health.state, now)) n++;
    return n;
  }

  /**
   * Next usable key in round-robin order, skipping `exclude` (keys already tried for this request).
   * When no key is usable, falls back to the cooling key that recovers soonest ("panic mode"), so a
   * pool whose every key is rate limited still answers instead of refusing everything.
   */
  pick(exclude: ReadonlySet<number>, now = this.clock()): PoolKey | undefined {
    const n = this.keys.length;
    for (let i = 0; i < n; i++) {
      const idx = (this.cursor + i) % n;
      const key = this.keys[idx];
      if (key === undefined || exclude.has(key.id)) continue;
      if (isUsable(key.health.state, now)) {
        this.cursor = (idx + 1) % n;
        return key;
      }
    }
    let best: PoolKey | undefined;
    for (const key of this.keys) {
      if (exclude.has(key.id) || key.health.state.kind !== 'cooling') continue;
      if (best === undefined || key.health.state.until < (best.health.state as { until: number }).until)
        best = key;
    }
    return best;
  }

  /**
   * A key that `affinity` allows, skipping `exclude`: usable keys in round-robin order first, then
   * cooling or parked ones (a read of a stored object works on a key out of quota; a cooling key
   * may answer 429 itself). Disabled keys never: they no longer reach the organisation.
   */
  pickPinned(affinity: KeyAffinity, exclude: ReadonlySet<number>, now = this.clock()): PoolKey | undefined {
    let fallback: PoolKey | undefined;
    const n = this.keys.length;
    for (let i = 0; i < n; i++) {
      const idx = (this.cursor + i) % n;
      const key = this.keys[idx];
      if (key === undefined || exclude.has(key.id) || !allows(affinity, key)) continue;
      if (isUsable(key.health.state, now)) {
        this.cursor = (idx + 1) % n;
        return key;
      }
      if (key.health.state.kind !== 'disabled') fallback ??= key;
    }
    return fallback;
  }

  /** Whether any key of the pool, healthy or not, satisfies `affinity` (else the pins disagree). */
  anyAllows(affinity: KeyAffinity): boolean {
    return this.keys.some((k) => allows(affinity, k));
  }

  /** Records one attempt's outcome on a key and applies the health rules. */
  report(key: PoolKey, outcome: UpstreamOutcome, errorText?: string): void {
    key.requests++;
    key.pendingRequests++;
    const failed = outcome.kind !== 'ok' && outcome.kind !== 'client-error';
    const h = key.health;
    // The common case — a healthy key answered — must cost O(1) whatever the pool size.
    if (!failed && h.state.kind === 'active' && h.consecutiveFailures === 0 && h.ejections === 0) return;
    const now = this.clock();
    if (failed) {
      key.failures++;
      key.pendingFailures++;
      key.lastError = errorText ?? outcome.reason;
    }
    const before = key.health.state;
    // Counting usable keys is O(pool); only failures need it, to spare the last usable key.
    const othersUsable = failed ? this.usableCount(now) - (isUsable(before, now) ? 1 : 0) : 0;
    key.health = nextHealth(key.health, outcome, now, this.policy, othersUsable);
    const after = key.health.state;
    if (after !== before && (after.kind !== before.kind || after.kind !== 'active')) {
      key.updatedAt = now;
      if (after.kind !== before.kind) {
        this.log.warn(
          {
            keyId: key.id,
            key: mask(key.last4),
            from: before.kind,
            to: after.kind,
            reason: stateReason(after),
          },
          'upstream key state changed',
        );
      }
      this.persistState(key);
    }
  }

  async add(secret: string, group: string | null = null): Promise<AddKeyResult> {
    const hash = this.secrets.hash(secret);
    const now = this.clock();
    const stored = await this.repo.insert({
      keyHash: hash,
      ciphertext: this.secrets.encrypt(secret),
      last4: secret.slice(-4),
      group,
      now,
    });
    if (stored === undefined) return { ok: false, reason: 'duplicate' };
    const key = this.fromStored(stored);
    this.keys.push(key);
    this.log.info({ keyId: key.id, key: mask(key.last4) }, 'upstream key added');
    return { ok: true, key: view(key, now) };
  }

  /** Enables (clearing any cooling/parking/disabling) or disables a key by admin decision. */
  async setEnabled(id: number, enabled: boolean): Promise<KeyView | undefined> {
    const key = this.keys.find((k) => k.id === id);
    if (key === undefined) return undefined;
    const now = this.clock();
    key.health = enabled
      ? { state: { kind: 'active' }, consecutiveFailures: 0, ejections: 0 }
      : { ...key.health, state: { kind: 'disabled', reason: 'disabled by admin', at: now } };
    key.updatedAt = now;
    await this.writeState(key);
    return view(key, now);
  }

  /** Puts a key in an organisation group (null: no group). */
  async setGroup(id: number, group: string | null): Promise<KeyView | undefined> {
    const key = this.keys.find((k) => k.id === id);
    if (key === undefined) return undefined;
    const now = this.clock();
    key.group = group;
    key.updatedAt = now;
    await this.repo.updateGroup(id, group, now);
    return view(key, now);
  }

  async remove(id: number): Promise<boolean> {
    const idx = this.keys.findIndex((k) => k.id === id);
    if (idx < 0) return false;
    await this.repo.delete(id);
    this.keys.splice(idx, 1);
    if (this.cursor >= this.keys.length) this.cursor = 0;
    return true;
  }

  list(): KeyView[] {
    const now = this.clock();
    return this.keys.map((k) => view(k, now));
  }

  get(id: number): KeyView | undefined {
    const key = this.keys.find((k) => k.id === id);
    return key === undefined ? undefined : view(key, this.clock());
  }

  /** Writes accumulated request/failure counters in one batch. */
  async flushCounters(): Promise<void> {
    const batch = [];
    for (const k of this.keys) {
      if (k.pendingRequests === 0 && k.pendingFailures === 0) continue;
      batch.push({
        id: k.id,
        requests: k.pendingRequests,
        failures: k.pendingFailures,
        lastError: k.lastError,
      });
      k.pendingRequests = 0;
      k.pendingFailures = 0;
    }
    if (batch.length > 0) await this.repo.addCounters(batch, this.clock());
  }

  /** Waits for state writes still in flight (shutdown). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.pendingWrites]);
  }

  private persistState(key: PoolKey): void {
    const p = this.writeState(key)
      .catch((err: unknown) => this.log.error({ err, keyId: key.id }, 'could not persist upstream key state'))
      .finally(() => this.pendingWrites.delete(p));
    this.pendingWrites.add(p);
  }

  private writeState(key: PoolKey): Promise<void> {
    const s = key.health.state;
    return this.repo.updateState(key.id, {
      status: s.kind,
      reason: stateReason(s),
      stateUntil: s.kind === 'cooling' ? s.until : s.kind === 'parked' ? s.probeAt : null,
      disabledAt: s.kind === 'disabled' ? s.at : null,
      lastError: key.lastError,
      updatedAt: key.updatedAt,
    });
  }

  private fromStored(row: StoredKey): PoolKey {
    return {
      id: row.id,
      secret: this.secrets.decrypt(row.ciphertext),
      last4: row.last4,
      createdAt: row.createdAt,
      group: row.group,
      health: { state: row.state, consecutiveFailures: 0, ejections: 0 },
      requests: row.requests,
      failures: row.failures,
      lastError: row.lastError,
      updatedAt: row.updatedAt,
      pendingRequests: 0,
      pendingFailures: 0,
    };
  }
}

/** A key may serve a pinned request when every pin names it or its group. */
function allows(affinity: KeyAffinity, key: PoolKey): boolean {
  return affinity.pins.every((p) => p.keyId === key.id || (p.group !== null && p.group === key.group));
}

export function mask(last4: string): string {
  return `sk-...${last4}`;
}

function stateReason(s: KeyState): string | null {
  return s.kind === 'active' ? null : s.reason;
}

function view(k: PoolKey, now: number): KeyView {
  const s = k.health.state;
  // A cooling key whose time is up is active again; report what selection will do.
  const status = s.kind === 'cooling' && s.until <= now ? 'active' : s.kind;
  return {
    id: k.id,
    masked: mask(k.last4),
    status,
    reason: status === 'active' ? null : stateReason(s),
    until: status === 'cooling' && s.kind === 'cooling' ? s.until : s.kind === 'parked' ? s.probeAt : null,
    lastError: k.lastError,
    requests: k.requests,
    failures: k.failures,
    createdAt: k.createdAt,
    updatedAt: k.updatedAt,
    group: k.group,
  };
}
