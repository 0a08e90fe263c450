/**
 * Accounts on first use: every edge that receives an account from outside (a key, an id, a name,
 * an e-mail, a journaled settlement, a followed batch) asks here, and gets the registry's object —
 * loaded from the store the first time, then kept in the registry's bounded cache.
 *
 * Reads that only show accounts (listings, the request log's names) do not fill the cache: an
 * account this process does not hold is shown as its store row has it, which is exact, since an
 * account with state the store lacks is never evicted (account-registry.ts).
 *
 * A row is added only if no write of the state writer completed while it was read (such a write
 * may hold state of an evicted object that was collected meanwhile, and the row would miss it),
 * and no other instance announced a change meanwhile. Otherwise the read is simply repeated.
 */
import { sql, type Kysely } from 'kysely';
import type { Database } from '../store/schema.js';
import type { Account } from './account.js';
import type { AccountRegistry } from './account-registry.js';
import { foldKey } from './account-rules.js';
import { loadSome } from './load-accounts.js';
import type { Period } from '../billing/calendar.js';

export interface LoaderDeps {
  readonly db: Kysely<Database>;
  readonly registry: AccountRegistry;
  /**
   * Writes of the state writer completed so far, accounts this process deleted, and the write of
   * everything queued (before a listing read from the store alone).
   */
  readonly writer: { readonly writes: number; isGone(id: number): boolean; flush(): Promise<void> };
  readonly period: () => Period;
}

/** Ids per `in (...)` list (SQLite allows 32,766 parameters; PostgreSQL 65,535). */
const CHUNK = 1000;
/** Reads repeated because a write completed meanwhile, before giving up on exactness checks. */
const MAX_RETRIES = 20;

export class AccountLoader {
  private readonly loading = new Map<number, Promise<Account | undefined>>();
  private storeReads = 0;

  constructor(private readonly deps: LoaderDeps) {}

  /** Store queries made to find or load accounts (a metric: a flood of bad keys must not grow it). */
  get reads(): number {
    return this.storeReads;
  }

  /** The account with this id (the registry's object), loaded if needed. */
  async byId(id: number): Promise<Account | undefined> {
    const known = this.deps.registry.get(id);
    if (known !== undefined) return known;
    return (await this.load([id])).get(id);
  }

  /** The registry's objects of these ids, loading those not in memory (absent ids are left out). */
  async load(ids: readonly number[]): Promise<Map<number, Account>> {
    const { registry } = this.deps;
    const out = new Map<number, Account>();
    const waits: Array<Promise<void>> = [];
    const missing: number[] = [];
    for (const id of new Set(ids)) {
      const known = registry.get(id);
      if (known !== undefined) out.set(id, known);
      else {
        const pending = this.loading.get(id);
        if (pending !== undefined) waits.push(pending.then((a) => void (a !== undefined && out.set(id, a))));
        else missing.push(id);
      }
    }
    for (let i = 0; i < missing.length; i += CHUNK) {
      const chunk = missing.slice(i, i + CHUNK);
      const read = this.readInto(chunk);
      for (const id of chunk) {
        const one = read.then((m) => m.get(id));
        this.loading.set(id, one);
        waits.push(one.then((a) => void (a !== undefined && out.set(id, a))));
      }
      void read.finally(() => {
        for (const id of chunk) this.loading.delete(id);
      });
    }
    await Promise.all(waits);
    return out;
  }

  /** The account whose key has this fingerprint; an unknown one is remembered (no query next time). */
  async byKeyHash(hash: string): Promise<Account | undefined> {
    const { registry, db } = this.deps;
    const known = registry.byKeyHash(hash);
    if (known !== undefined) return known;
    if (registry.isUnknownKey(hash)) return undefined;
    this.storeReads++;
    const row = await db.selectFrom('accounts').select('id').where('key_hash', '=', hash).executeTakeFirst();
    const account = row === undefined ? undefined : await this.byId(row.id);
    // A key changed in memory and not yet written is found under its old fingerprint: not a match.
    if (account !== undefined && account.keyHash === hash) return account;
    if (registry.byKeyHash(hash) === undefined) registry.noteUnknownKey(hash);
    return registry.byKeyHash(hash);
  }

  /** Resolves an identifier the way the original API does: numeric id, then name, then e-mail. */
  async resolve(ident: string): Promise<Account | undefined> {
    if (/^\d{1,15}$/.test(ident)) {
      const a = await this.byId(Number(ident));
      if (a !== undefined) return a;
    }
    return (await this.byName(ident)) ?? (await this.byEmail(ident));
  }

  /** The account whose Name is `name` in any case or normal form (`foldKey`). */
  byName(name: string): Promise<Account | undefined> {
    return this.byFolded('name_key', foldKey(name), (a) => foldKey(a.name));
  }

  /** The account whose E-mail is `email` in any case or normal form (`foldKey`). */
  byEmail(email: string): Promise<Account | undefined> {
    return this.byFolded('email_key', foldKey(email), (a) => foldKey(a.email));
  }

  /** True when `ancestor` is above `account` in the tree (parents read from the store as needed). */
  async isAncestor(ancestor: Account, account: Account): Promise<boolean> {
    let p = account.parentId;
    for (let depth = 0; p !== null && depth < 1000; depth++) {
      if (p === ancestor.id) return true;
      p = await this.parentOf(p);
    }
    return false;
  }

  /** All descendants' ids, breadth-first, by id within a level. */
  async descendantIds(root: Account): Promise<number[]> {
    const out: number[] = [];
    let level = await this.childIds([root.id]);
    while (level.length > 0) {
      // Not push(...level): a level of a million ids is more arguments than a call can take.
      for (const id of level) out.push(id);
      level = await this.childIds(level);
    }
    return out;
  }

  /**
   * One page of `parent`'s direct children (`child`) or of all its descendants (`descendant`),
   * newest (highest id) first, and how many there are: two queries whose answers are the size of
   * the page and a count, whatever the size of the tree. The changes this process has queued are
   * written first, so that the store holds every account created or deleted here.
   */
  async subtreePage(
    parent: Account,
    scope: 'child' | 'descendant',
    offset: number,
    limit: number,
  ): Promise<{ readonly ids: number[]; readonly total: number }> {
    await this.deps.writer.flush();
    // Every account but the root descends from it (an account with children cannot be deleted):
    // the root's tree is the table, read through its key instead of walked level by level.
    const tree =
      scope === 'child'
        ? sql`select id from accounts where parent_id = ${parent.id}`
        : parent.isRoot
          ? sql`select id from accounts where id <> ${parent.id}`
          : sql`with recursive tree(id) as (
              select id from accounts where parent_id = ${parent.id}
              union all
              select a.id from accounts a join tree t on a.parent_id = t.id
            ) select id from tree`;
    this.storeReads += 2;
    const counted = await sql<{ n: number | string }>`select count(*) as n from (${tree}) as s`.execute(
      this.deps.db,
    );
    const page = await sql<{ id: number }>`select id from (${tree}) as s order by id desc
      limit ${limit} offset ${offset}`.execute(this.deps.db);
    return { ids: page.rows.map((r) => Number(r.id)), total: Number(counted.rows[0]?.n ?? 0) };
  }

  /**
   * Accounts to show: the registry's object when this process has one, else a fresh object built
   * from the store (not added to the registry, so a listing does not flush the cache).
   */
  async show(ids: readonly number[]): Promise<Account[]> {
    const { registry } = this.deps;
    const out = new Map<number, Account>();
    const rest: number[] = [];
    for (const id of ids) {
      const a = registry.get(id);
      if (a !== undefined) out.set(id, a);
      else rest.push(id);
    }
    for (let i = 0; i < rest.length; i += CHUNK) {
      this.storeReads++;
      const rows = await loadSome(this.deps.db, rest.slice(i, i + CHUNK), this.deps.period());
      for (const [id, a] of rows) out.set(id, registry.get(id) ?? a);
    }
    return ids.flatMap((id) => out.get(id) ?? []);
  }

  /** Names of these accounts (the request log shows them beside each row). */
  async names(ids: readonly number[]): Promise<Map<number, string>> {
    const { registry, db } = this.deps;
    const out = new Map<number, string>();
    const rest: number[] = [];
    for (const id of new Set(ids)) {
      const a = registry.get(id);
      if (a !== undefined) out.set(id, a.name);
      else rest.push(id);
    }
    for (let i = 0; i < rest.length; i += CHUNK) {
      this.storeReads++;
      const rows = await db
        .selectFrom('accounts')
        .select(['id', 'name'])
        .where('id', 'in', rest.slice(i, i + CHUNK))
        .execute();
      for (const r of rows) out.set(r.id, registry.get(r.id)?.name ?? r.name);
    }
    return out;
  }

  /**
   * Accounts holding any of these names or e-mails (folded), as they are now: what a change that
   * takes a name or an e-mail checks against (account-unit.ts).
   */
  async holders(names: readonly string[], emails: readonly string[]): Promise<Account[]> {
    const out: Account[] = [];
    for (const n of new Set(names)) {
      const a = await this.byName(n);
      if (a !== undefined) out.push(a);
    }
    for (const e of new Set(emails)) {
      const a = await this.byEmail(e);
      if (a !== undefined) out.push(a);
    }
    return out;
  }

  private async byFolded(
    column: 'name_key' | 'email_key',
    key: string,
    current: (a: Account) => string,
  ): Promise<Account | undefined> {
    this.storeReads++;
    const rows = await this.deps.db
      .selectFrom('accounts')
      .select('id')
      .where(column, '=', key)
      .orderBy('id')
      .execute();
    // The loaded object is newer than its row (a rename not yet written): it has the last word.
    // Changes are written before they are answered, and a change of names writes everything
    // queued before it looks (account-unit.ts), so no newer spelling hides outside the store.
    for (const r of rows) {
      const a = await this.byId(r.id);
      if (a !== undefined && current(a) === key) return a;
    }
    return undefined;
  }

  private async parentOf(id: number): Promise<number | null> {
    const known = this.deps.registry.get(id);
    if (known !== undefined) return known.parentId;
    this.storeReads++;
    const row = await this.deps.db
      .selectFrom('accounts')
      .select('parent_id')
      .where('id', '=', id)
      .executeTakeFirst();
    return row?.parent_id ?? null;
  }

  private async childIds(parents: readonly number[]): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < parents.length; i += CHUNK) {
      this.storeReads++;
      const rows = await this.deps.db
        .selectFrom('accounts')
        .select('id')
        .where('parent_id', 'in', parents.slice(i, i + CHUNK))
        .orderBy('id')
        .execute();
      for (const r of rows) if (!this.deps.writer.isGone(r.id)) out.push(r.id);
    }
    // Accounts created here and not yet written are children too.
    const set = new Set(parents);
    const known = new Set(out);
    for (const a of this.deps.registry.all())
      if (a.parentId !== null && set.has(a.parentId) && !known.has(a.id)) out.push(a.id);
    return out.sort((a, b) => a - b);
  }

  /** Reads `ids` and adds them to the registry, again if a write completed during the read. */
  private async readInto(ids: readonly number[]): Promise<Map<number, Account>> {
    const { registry, writer } = this.deps;
    for (let attempt = 0; ; attempt++) {
      const before = writer.writes + registry.changes;
      this.storeReads++;
      const rows = await loadSome(this.deps.db, ids, this.deps.period());
      if (writer.writes + registry.changes !== before && attempt < MAX_RETRIES) continue;
      const out = new Map<number, Account>();
      for (const id of ids) {
        // Loaded meanwhile (or a ghost revived): that object is the account.
        const known = registry.get(id);
        if (known !== undefined) {
          out.set(id, known);
          continue;
        }
        const fresh = rows.get(id);
        if (fresh === undefined || writer.isGone(id)) continue;
        const { leased: _leased, ...account } = fresh;
        registry.add(account);
        out.set(id, account);
      }
      return out;
    }
  }
}
