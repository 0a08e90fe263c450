/**
 * Every account in memory, indexed by key fingerprint (authentication without a database read),
 * id, name and e-mail, with the parent/child tree. Tens of thousands of accounts cost a few MB;
 * lookups are O(1), so per-request cost stays flat as the tree grows.
 *
 * Names and e-mails are indexed by their `foldKey` (NFKC, case-folded in every script): this
 * index is what makes them unique (the store only has plain indexes, see migrations.ts 0002).
 */
import type { Account } from './account.js';
import { foldKey } from './account-rules.js';

/** Deletes `key` only while it still points at `account` (another account may hold it now). */
function unset<K>(map: Map<K, Account>, key: K, account: Account): void {
  if (map.get(key) === account) map.delete(key);
}

export class AccountRegistry {
  private readonly byId = new Map<number, Account>();
  private readonly byKey = new Map<string, Account>();
  private readonly byName = new Map<string, Account>();
  private readonly byEmail = new Map<string, Account>();
  private nextId = 1;

  /** Reserves the id for a new account (ids are assigned in memory; the writer inserts them). */
  allocateId(): number {
    return this.nextId++;
  }

  add(account: Account): void {
    this.byId.set(account.id, account);
    this.byKey.set(account.keyHash, account);
    this.byName.set(foldKey(account.name), account);
    this.byEmail.set(foldKey(account.email), account);
    if (account.id >= this.nextId) this.nextId = account.id + 1;
    if (account.parentId !== null) this.byId.get(account.parentId)?.childIds.add(account.id);
  }

  remove(account: Account): void {
    unset(this.byId, account.id, account);
    unset(this.byKey, account.keyHash, account);
    unset(this.byName, foldKey(account.name), account);
    unset(this.byEmail, foldKey(account.email), account);
    if (account.parentId !== null) this.byId.get(account.parentId)?.childIds.delete(account.id);
  }

  /** Re-indexes after a name, e-mail or key change (call with the old values). */
  reindex(account: Account, old: { name: string; email: string; keyHash: string }): void {
    unset(this.byName, foldKey(old.name), account);
    unset(this.byEmail, foldKey(old.email), account);
    unset(this.byKey, old.keyHash, account);
    this.byName.set(foldKey(account.name), account);
    this.byEmail.set(foldKey(account.email), account);
    this.byKey.set(account.keyHash, account);
  }

  byKeyHash(hash: string): Account | undefined {
    return this.byKey.get(hash);
  }

  get(id: number): Account | undefined {
    return this.byId.get(id);
  }

  /** The account whose Name is `name` in any case or normal form (`foldKey`). */
  findByName(name: string): Account | undefined {
    return this.byName.get(foldKey(name));
  }

  /** The account whose E-mail is `email` in any case or normal form (`foldKey`). */
  findByEmail(email: string): Account | undefined {
    return this.byEmail.get(foldKey(email));
  }

  /** Resolves an identifier the way the original API does: numeric id, then name, then e-mail. */
  resolve(ident: string): Account | undefined {
    if (/^\d+$/.test(ident)) {
      const a = this.byId.get(Number(ident));
      if (a !== undefined) return a;
    }
    return this.findByName(ident) ?? this.findByEmail(ident);
  }

  root(): Account | undefined {
    for (const a of this.byId.values()) if (a.isRoot) return a;
    return undefined;
  }

  children(account: Account): Account[] {
    const out: Account[] = [];
    for (const id of account.childIds) {
      const c = this.byId.get(id);
      if (c !== undefined) out.push(c);
    }
    return out.sort((a, b) => a.id - b.id);
  }

  /** All descendants, breadth-first (children, grandchildren, ...), ordered by id within a level. */
  descendants(account: Account): Account[] {
    const out: Account[] = [];
    let level = this.children(account);
    while (level.length > 0) {
      out.push(...level);
      level = level.flatMap((a) => this.children(a));
    }
    return out;
  }

  isAncestor(ancestor: Account, account: Account): boolean {
    let p = account.parentId;
    while (p !== null) {
      if (p === ancestor.id) return true;
      p = this.byId.get(p)?.parentId ?? null;
    }
    return false;
  }

  get size(): number {
    return this.byId.size;
  }

  all(): IterableIterator<Account> {
    return this.byId.values();
  }
}
