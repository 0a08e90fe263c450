/**
 * The accounts this process has in memory: a bounded cache over the store, indexed by id and key
 * fingerprint, so that a request of a loaded account authenticates without a database read.
 * Accounts come in on first use (account-loader.ts) and the least recently loaded idle ones go
 * out when the cache is full, so a million sub-accounts in the store cost their rows, not memory.
 *
 * One object per account, always: memory holds state the store may not have yet (settlements not
 * flushed, reservations), so two objects for one account would lose money. Hence:
 * - an account is never evicted while it is `held` (reservations, unwritten state, leases: the
 *   composition root says what holds one);
 * - an evicted account still referenced somewhere (a request between authentication and its
 *   reservation, a settlement on its way to the writer) is a "ghost" (a `WeakRef`): loading it
 *   again revives that object instead of reading the store;
 * - the loader adds a row it read only when no write completed during the read (see
 *   account-loader.ts), so a ghost collected meanwhile cannot be replaced by a stale row.
 *
 * Unknown key fingerprints are remembered (bounded, oldest forgotten first) so that a flood of
 * wrong keys costs one store query per key, and forgotten as soon as an account takes that key.
 */
import type { Account } from './account.js';

export interface RegistryOptions {
  /** Accounts kept loaded before idle ones are evicted (the root and held accounts always stay). */
  readonly capacity: number;
  /** Unknown key fingerprints remembered. */
  readonly missCapacity: number;
  /** True while the account must stay loaded (see the file comment). */
  readonly held: (account: Account) => boolean;
}

const DEFAULTS: RegistryOptions = { capacity: 20_000, missCapacity: 50_000, held: () => false };

/** Deletes `key` only while it still points at `account` (another account may hold it now). */
function unset<K>(map: Map<K, Account>, key: K, account: Account): void {
  if (map.get(key) === account) map.delete(key);
}

export class AccountRegistry {
  private readonly byId = new Map<number, Account>();
  private readonly byKey = new Map<string, Account>();
  private readonly ghosts = new Map<number, WeakRef<Account>>();
  private readonly buried = new FinalizationRegistry<number>((id) => {
    if (this.ghosts.get(id)?.deref() === undefined) this.ghosts.delete(id);
  });
  private readonly misses = new Set<string>();
  private readonly opts: RegistryOptions;
  private rootAccount: Account | undefined;
  private nextId = 1;
  private evicted = 0;
  private changed = 0;

  constructor(opts: Partial<RegistryOptions> = {}) {
    this.opts = { ...DEFAULTS, ...opts };
  }

  /** Reserves the id for a new account (ids are assigned in memory; the writer inserts them). */
  allocateId(): number {
    return this.nextId++;
  }

  /** The highest id in the store, read at start (ids of new accounts follow it). */
  noteMaxId(id: number): void {
    if (id >= this.nextId) this.nextId = id + 1;
  }

  add(account: Account): void {
    this.byId.set(account.id, account);
    this.byKey.set(account.keyHash, account);
    this.ghosts.delete(account.id);
    this.misses.delete(account.keyHash);
    if (account.isRoot) this.rootAccount = account;
    this.noteMaxId(account.id);
    if (this.byId.size > this.opts.capacity) this.evict();
  }

  remove(account: Account): void {
    unset(this.byId, account.id, account);
    unset(this.byKey, account.keyHash, account);
    this.ghosts.delete(account.id);
    if (this.rootAccount === account) this.rootAccount = undefined;
  }

  /** Re-indexes after a key change (call with the old values; names live in the store). */
  reindex(account: Account, old: { name: string; email: string; keyHash: string }): void {
    unset(this.byKey, old.keyHash, account);
    this.byKey.set(account.keyHash, account);
    this.misses.delete(account.keyHash);
  }

  /** The loaded account holding this key fingerprint. */
  byKeyHash(hash: string): Account | undefined {
    return this.byKey.get(hash);
  }

  /** The account with this id if this process has its object (loaded, or a ghost revived). */
  get(id: number): Account | undefined {
    return this.byId.get(id) ?? this.revive(id);
  }

  /** Was this fingerprint looked up in the store and found nowhere (since the last change)? */
  isUnknownKey(hash: string): boolean {
    return this.misses.has(hash);
  }

  noteUnknownKey(hash: string): void {
    if (this.misses.size >= this.opts.missCapacity) {
      // Oldest first: a Set iterates in insertion order.
      const oldest = this.misses.values().next();
      if (oldest.done !== true) this.misses.delete(oldest.value);
    }
    this.misses.add(hash);
  }

  /**
   * Another instance changed an account: any remembered miss may now be a key, and a row being read
   * now may be older than the change (`changes` tells the loader to read it again).
   */
  forgetUnknownKeys(): void {
    this.misses.clear();
    this.changed++;
  }

  /** Changes announced by other instances so far. */
  get changes(): number {
    return this.changed;
  }

  root(): Account | undefined {
    return this.rootAccount;
  }

  get size(): number {
    return this.byId.size;
  }

  /**
   * Evicts idle accounts if the cache is over its capacity. Eviction otherwise runs only when an
   * account is added, and a burst that left every account with unwritten state (held) would keep
   * the cache above its bound until the next load: the state writer calls this after each write.
   */
  trim(): void {
    if (this.byId.size > this.opts.capacity) this.evict();
  }

  /** Accounts evicted since start (a metric). */
  get evictions(): number {
    return this.evicted;
  }

  /** The loaded accounts (the others are idle: nothing reserved, nothing unwritten). */
  all(): IterableIterator<Account> {
    return this.byId.values();
  }

  private revive(id: number): Account | undefined {
    const ghost = this.ghosts.get(id)?.deref();
    if (ghost === undefined) return undefined;
    this.add(ghost);
    return ghost;
  }

  /**
   * Evicts idle accounts, oldest loaded first, down to 90 % of the capacity. Held ones are moved
   * to the back, so each eviction pass looks at every account at most once.
   */
  private evict(): void {
    const goal = Math.floor(this.opts.capacity * 0.9);
    let budget = this.byId.size;
    for (const a of this.byId.values()) {
      if (this.byId.size <= goal || budget-- === 0) break;
      this.byId.delete(a.id);
      if (a.isRoot || this.opts.held(a)) {
        this.byId.set(a.id, a);
        continue;
      }
      unset(this.byKey, a.keyHash, a);
      this.ghosts.set(a.id, new WeakRef(a));
      this.buried.register(a, a.id);
      this.evicted++;
    }
  }
}
