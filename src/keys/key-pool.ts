/**
 * The upstream key pool: every key decrypted in memory, round-robin selection over usable keys,
 * health transitions after each attempt, and persistence of state changes and counters off the
 * hot path (state changes are written asynchronously, counters in periodic batches).
 *
 * Several instances over one store share the pool through it. The store is the truth; each
 * instance's pool is a cache that `reloadKey(id)` and `reloadKeys()` bring up to date in place
 * (a key keeps its object, its counters and its secret: requests in flight hold it). After every
 * change it writes, the pool calls the injected `announce(id)`, and the other instances reload
 * that key:
 * - administration (add, enable, disable, group, delete): written, then announced; the admin call
 *   resolves once the others applied it (or the announcer stopped waiting);
 * - health that concerns the key rather than this instance (401 → disabled, out of quota →
 *   parked, 429/403 → cooling until a time): written in the background, then announced;
 * - outlier ejection after repeated 5xx/timeouts, and recovery after a success: written, not
 *   announced (what one instance's network sees is its own); another instance adopts them only
 *   when it next reloads the key.
 * Counters are never announced: each instance adds its own deltas (`flushCounters`).
 *
 * Writes of one key are chained in order, and each writes the key's state as it is when the write
 * runs, so the stored state ends as the in-memory one. A health write never overwrites a key the
 * store has disabled (an administrator, or another instance, disabled it): the pool adopts the
 * stored state instead. A reload never takes a stored state over a write of this instance still
 * on its way, and a structural change (add, delete) newer than a reload's read wins over it.
 *
 * One file although long: selection, health transitions and their persistence act on the same
 * key objects under one set of invariants (never eject the last usable key, counters written once).
 */
import type { Logger } from 'pino';
import type { UpstreamOutcome } from '../upstream/classify-outcome.js';
import { isUsable, nextHealth, type HealthPolicy, type KeyHealth, type KeyState } from './key-state.js';
import type { KeyRepository, KeyStateWrite, StoredKey } from './key-repository.js';
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

/** An administrator's change of one key (`undefined`: leave that part as it is). */
export interface KeyChange {
  readonly enabled?: boolean | undefined;
  /** The key's organisation group; `null` removes it. */
  readonly group?: string | null | undefined;
}

export interface KeyPoolOptions {
  /**
   * Tells the other instances that key `id` changed in the store (added, state, group, deleted).
   * Called after the change is written; resolves once they applied it or the announcer stopped
   * waiting. A rejection means the notice was not sent: the pool sends it again every
   * `announceRetryMs` until it goes out (or `close()`). Absent: this instance runs alone.
   */
  readonly announce?: (id: number) => Promise<void>;
  /** Pause before an announcement that failed is sent again (default 1000 ms). */
  readonly announceRetryMs?: number;
}

/** What a reload did to the keys it read. */
interface ReloadTally {
  added: number;
  removed: number;
  changed: number;
}

type Applied = 'added' | 'removed' | 'changed' | 'same' | 'skipped';

const ACTIVE: KeyHealth = { state: { kind: 'active' }, consecutiveFailures: 0, ejections: 0 };

export class KeyPool {
  private keys: PoolKey[] = [];
  private readonly byId = new Map<number, PoolKey>();
  private cursor = 0;
  /** Background work (health writes, their announcements, follow-up reloads), for `settled()`. */
  private readonly pendingWrites = new Set<Promise<void>>();
  /** The tail of each key's chain of writes; absent when none is under way. */
  private readonly writing = new Map<number, Promise<void>>();
  /**
   * Ordering of reads and structural changes: every reload takes a number before it reads, every
   * add or removal takes one when it happens. `touched` keeps, per key, the newest number that set
   * its presence or state; a reload whose number is lower leaves the key alone (it read older
   * data). Forgotten whenever no reload is running (later ones all take higher numbers).
   */
  private seq = 0;
  private readonly touched = new Map<number, number>();
  private reloads = 0;
  /** Keys whose announcement failed, sent again by `retryTimer`. */
  private readonly unannounced = new Set<number>();
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly announcer: ((id: number) => Promise<void>) | undefined;
  private readonly announceRetryMs: number;

  constructor(
    private readonly repo: KeyRepository,
    private readonly secrets: Secrets,
    private readonly policy: HealthPolicy,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
    options: KeyPoolOptions = {},
  ) {
    this.announcer = options.announce;
    this.announceRetryMs = options.announceRetryMs ?? 1_000;
  }

  /** Loads every stored key into memory (decrypting each key once, when it first appears). */
  async load(): Promise<void> {
    await this.reconcile();
  }

  /**
   * Brings key `id` up to date with the store, in place: adds it when new here (the only case
   * that decrypts), removes it when gone from the store, else adopts its stored state and group
   * and keeps its object and counters. The hook for a change notice about one key.
   */
  async reloadKey(id: number): Promise<void> {
    this.reloads++;
    try {
      for (let attempt = 1; ; attempt++) {
        // Read after this instance's own writes of the key have landed.
        await this.writing.get(id);
        const at = ++this.seq;
        const row = await this.repo.get(id);
        if (this.writing.has(id) && attempt < 3) continue;
        this.apply(id, row, at);
        if (this.writing.has(id)) this.followUp(id);
        return;
      }
    } finally {
      this.endReload();
    }
  }

  /**
   * Reconciles the whole pool with the store: adds keys new here, removes keys gone, adopts
   * states and groups (in place, as `reloadKey`). The hook for a missed notice, a Redis restart or
   * a reconnection.
   */
  async reloadKeys(): Promise<void> {
    const t = await this.reconcile();
    if (t.added + t.removed + t.changed > 0)
      this.log.info({ ...t, keys: this.keys.length }, 'upstream key pool reconciled with the store');
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
      // A key removed from the pool meanwhile (a request held it) is no longer written.
      if (this.byId.get(key.id) === key) this.persistHealth(key, SHARED_OUTCOMES.has(outcome.kind));
    }
  }

  /**
   * Adds a key to the store and the pool, and announces it. A key already stored is a duplicate
   * (its unique fingerprint decides, also against another instance adding it at the same moment,
   * as INIT_KEYS on instances starting together): nothing is raised, and the stored key is taken
   * into this pool if it is not here yet.
   */
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
    if (stored === undefined) {
      const id = await this.repo.idOf(hash);
      if (id !== undefined && !this.byId.has(id)) await this.reloadKey(id);
      return { ok: false, reason: 'duplicate' };
    }
    let key = this.byId.get(stored.id);
    if (key === undefined) {
      key = this.fromStored(stored, secret);
      this.attach(key, ++this.seq);
    }
    this.log.info({ keyId: key.id, key: mask(key.last4) }, 'upstream key added');
    await this.announce(key.id);
    return { ok: true, key: view(key, this.clock()) };
  }

  /**
   * Applies an administrator's change, writes it, announces it. Undefined when the key is
   * neither in the pool nor in the store (a key stored but missing here is taken in first).
   */
  async update(id: number, change: KeyChange): Promise<KeyView | undefined> {
    const key = await this.held(id);
    if (key === undefined) return undefined;
    const now = this.clock();
    const { enabled, group } = change;
    if (group !== undefined) key.group = group;
    if (enabled !== undefined)
      key.health = enabled
        ? { ...ACTIVE }
        : { ...key.health, state: { kind: 'disabled', reason: 'disabled by admin', at: now } };
    key.updatedAt = now;
    await this.chainWrite(id, async () => {
      if (group !== undefined) await this.repo.updateGroup(id, key.group, key.updatedAt);
      if (enabled !== undefined) await this.repo.updateState(id, stateWrite(key));
    });
    await this.announce(id);
    // Deleted by another instance meanwhile: the announcement's reload removed it.
    return this.byId.get(id) === key ? view(key, this.clock()) : undefined;
  }

  /** Enables (clearing any cooling/parking/disabling) or disables a key by admin decision. */
  setEnabled(id: number, enabled: boolean): Promise<KeyView | undefined> {
    return this.update(id, { enabled });
  }

  /** Puts a key in an organisation group (null: no group). */
  setGroup(id: number, group: string | null): Promise<KeyView | undefined> {
    return this.update(id, { group });
  }

  /** Deletes a key from the store and the pool, and announces it. Requests holding it finish. */
  async remove(id: number): Promise<boolean> {
    const key = await this.held(id);
    if (key === undefined) return false;
    await this.chainWrite(id, () => this.repo.delete(id));
    if (this.byId.get(id) === key) this.detach(key, ++this.seq);
    await this.announce(id);
    return true;
  }

  list(): KeyView[] {
    const now = this.clock();
    return this.keys.map((k) => view(k, now));
  }

  get(id: number): KeyView | undefined {
    const key = this.byId.get(id);
    return key === undefined ? undefined : view(key, this.clock());
  }

  /** Like `get`, but a key stored and missing here (a notice missed) is taken in first. */
  async lookup(id: number): Promise<KeyView | undefined> {
    const key = await this.held(id);
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

  /** Waits for state writes, their announcements and follow-up reloads still in flight. */
  async settled(): Promise<void> {
    while (this.pendingWrites.size > 0) await Promise.allSettled([...this.pendingWrites]);
  }

  /**
   * Shutdown: stops sending failed announcements again (the other instances reconcile when they
   * next reconnect), then waits as `settled()`.
   */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.unannounced.clear();
    await this.settled();
  }

  /** Writes a health transition in the background; announces it when it concerns every instance. */
  private persistHealth(key: PoolKey, share: boolean): void {
    const id = key.id;
    this.track(
      this.chainWrite(id, () => this.repo.updateHealth(id, stateWrite(key)))
        .then(async (written) => {
          // Disabled (or deleted) in the store meanwhile: take that state instead of ours.
          if (!written) await this.reloadKey(id);
          else if (share) await this.announce(id);
        })
        .catch((err: unknown) => this.log.error({ err, keyId: id }, 'could not persist upstream key state')),
    );
  }

  private track(work: Promise<void>): void {
    const p = work.finally(() => this.pendingWrites.delete(p));
    this.pendingWrites.add(p);
  }

  /** Runs `write` after the key's earlier writes (whatever became of them). */
  private chainWrite<T>(id: number, write: () => Promise<T>): Promise<T> {
    const run = (this.writing.get(id) ?? Promise.resolve()).then(write);
    const done = run.then(
      () => undefined,
      () => undefined,
    );
    this.writing.set(id, done);
    void done.then(() => {
      if (this.writing.get(id) === done) this.writing.delete(id);
    });
    return run;
  }

  /** Sends the change notice of key `id`; a failure is logged and sent again later. */
  private async announce(id: number): Promise<void> {
    const announce = this.announcer;
    if (announce === undefined) return;
    try {
      await announce(id);
    } catch (err: unknown) {
      if (this.closed) return;
      this.log.warn({ err, keyId: id }, 'could not announce an upstream key change; will retry');
      this.unannounced.add(id);
      this.retryTimer ??= setTimeout(() => {
        this.retryTimer = undefined;
        const ids = [...this.unannounced];
        this.unannounced.clear();
        for (const again of ids) this.track(this.announce(again));
      }, this.announceRetryMs);
      this.retryTimer.unref();
    }
  }

  /** The key in the pool, or re-read from the store when missing here (a notice missed). */
  private async held(id: number): Promise<PoolKey | undefined> {
    const key = this.byId.get(id);
    if (key !== undefined) return key;
    await this.reloadKey(id);
    return this.byId.get(id);
  }

  private async reconcile(): Promise<ReloadTally> {
    this.reloads++;
    try {
      const at = ++this.seq;
      const rows = await this.repo.list();
      const tally: ReloadTally = { added: 0, removed: 0, changed: 0 };
      const count = (r: Applied): void => {
        if (r === 'added' || r === 'removed' || r === 'changed') tally[r]++;
      };
      const stored = new Set<number>();
      for (const row of rows) {
        stored.add(row.id);
        count(this.apply(row.id, row, at));
        if (this.writing.has(row.id)) this.followUp(row.id);
      }
      for (const key of [...this.keys]) if (!stored.has(key.id)) count(this.apply(key.id, undefined, at));
      return tally;
    } finally {
      this.endReload();
    }
  }

  /** Applies what a reload numbered `at` read of key `id` (`undefined`: not stored). */
  private apply(id: number, row: StoredKey | undefined, at: number): Applied {
    if ((this.touched.get(id) ?? 0) > at) return 'skipped';
    const key = this.byId.get(id);
    if (row === undefined) {
      if (key === undefined) return 'same';
      this.detach(key, at);
      this.log.info({ keyId: id, key: mask(key.last4) }, 'upstream key removed (deleted in the store)');
      return 'removed';
    }
    if (key === undefined) {
      this.attach(this.fromStored(row), at);
      return 'added';
    }
    this.touched.set(id, at);
    return this.refresh(key, row) ? 'changed' : 'same';
  }

  /** Adopts a stored row into the key object in flight; true when its state or group changed. */
  private refresh(key: PoolKey, row: StoredKey): boolean {
    // Counters: the store has every instance's flushed deltas, this pool its own not yet flushed.
    key.requests = Math.max(key.requests, row.requests + key.pendingRequests);
    key.failures = Math.max(key.failures, row.failures + key.pendingFailures);
    if (row.updatedAt > key.updatedAt) {
      key.updatedAt = row.updatedAt;
      key.lastError = row.lastError;
    }
    // A write of this instance is on its way: its state is newer than what was read.
    if (this.writing.has(key.id)) return false;
    let changed = false;
    if (key.group !== row.group) {
      key.group = row.group;
      changed = true;
    }
    const before = key.health.state;
    if (!sameState(before, row.state)) {
      // Active again (an administrator enabled it): its failure history is cleared, as here.
      key.health = row.state.kind === 'active' ? { ...ACTIVE } : { ...key.health, state: row.state };
      changed = true;
      if (before.kind !== row.state.kind)
        this.log.info(
          { keyId: key.id, key: mask(key.last4), from: before.kind, to: row.state.kind },
          'upstream key state taken from the store',
        );
    }
    return changed;
  }

  /** Reads key `id` again once this instance's writes of it have landed. */
  private followUp(id: number): void {
    const pending = this.writing.get(id) ?? Promise.resolve();
    this.track(
      pending
        .then(() => this.reloadKey(id))
        .catch((err: unknown) => this.log.error({ err, keyId: id }, 'could not reload an upstream key')),
    );
  }

  private endReload(): void {
    if (--this.reloads === 0) this.touched.clear();
  }

  private attach(key: PoolKey, at: number): void {
    // In id order, as loaded: every instance lists (and goes round) the keys in the same order.
    let idx = this.keys.length;
    while (idx > 0 && this.keys[idx - 1]!.id > key.id) idx--;
    this.keys.splice(idx, 0, key);
    if (idx < this.cursor) this.cursor++;
    this.byId.set(key.id, key);
    this.touched.set(key.id, at);
  }

  private detach(key: PoolKey, at: number): void {
    const idx = this.keys.indexOf(key);
    if (idx >= 0) {
      this.keys.splice(idx, 1);
      // Keep the round-robin where it was over the keys that remain.
      if (idx < this.cursor) this.cursor--;
      if (this.cursor >= this.keys.length) this.cursor = 0;
    }
    this.byId.delete(key.id);
    this.touched.set(key.id, at);
  }

  /** A pool key from a stored row; decrypts unless the caller already has the secret. */
  private fromStored(row: StoredKey, secret?: string): PoolKey {
    return {
      id: row.id,
      secret: secret ?? this.secrets.decrypt(row.ciphertext),
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

/**
 * Outcomes whose state every instance adopts at once: the key itself is rejected, out of quota,
 * or rate limited until a time. Transient faults (outlier ejection) and recoveries stay local.
 */
const SHARED_OUTCOMES: ReadonlySet<UpstreamOutcome['kind']> = new Set([
  'key-invalid',
  'key-quota',
  'rate-limited',
]);

/** The key's state as it is now, as the store keeps it. */
function stateWrite(key: PoolKey): KeyStateWrite {
  const s = key.health.state;
  return {
    status: s.kind,
    reason: stateReason(s),
    stateUntil: s.kind === 'cooling' ? s.until : s.kind === 'parked' ? s.probeAt : null,
    disabledAt: s.kind === 'disabled' ? s.at : null,
    lastError: key.lastError,
    updatedAt: key.updatedAt,
  };
}

function sameState(a: KeyState, b: KeyState): boolean {
  switch (a.kind) {
    case 'active':
      return b.kind === 'active';
    case 'cooling':
      return b.kind === 'cooling' && a.until === b.until && a.reason === b.reason;
    case 'parked':
      return b.kind === 'parked' && a.probeAt === b.probeAt && a.reason === b.reason;
    case 'disabled':
      return b.kind === 'disabled' && a.at === b.at && a.reason === b.reason;
  }
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
