/**
 * Who owns each upstream object, and which pool key holds it. Recent objects are kept in memory
 * (a request naming the response it just created needs no database read); older ones are read
 * from the store on demand. New, deleted and settled objects reach the store through the state
 * writer, in the same transaction as the money that goes with them (a batch's charge and its
 * "settled" mark land together, so a restart can neither bill it twice nor forget it).
 *
 * Several instances (a directory is given): every creation and deletion is also published to the
 * directory at once, and a lookup asks the directory first, then the store: another instance's
 * object is found the moment it is published, long before its row is written, and a deletion
 * anywhere is seen everywhere at once (memory alone cannot know of a deletion made elsewhere, so
 * on several instances it answers only for rows this writer still holds). The directory's entries
 * expire once the store surely has the rows; while Redis is unreachable the store answers.
 */
import type { Micros } from '../billing/money.js';
import type { ObjectRow, StateWriter } from '../store/state-writer.js';
import type { ObjectDirectory, SharedObject } from './object-directory.js';
import { isObjectKind, type ObjectKind } from './object-kinds.js';
import type { ObjectRepository } from './object-repository.js';

/** Billing state of work the gateway follows until upstream ends it. */
export type Follow =
  | {
      readonly state: 'open';
      /** Held on the owner's balance until settlement. */
      readonly reserved: Micros;
      /** Usage record id of the settlement. */
      readonly requestId: string;
      /** Model priced for a background response (a batch prices each line by its own model). */
      readonly model: string | null;
      readonly pricePercent: number;
      /** The instance that follows it (several instances; absent on one). */
      readonly owner?: string;
    }
  | { readonly state: 'done' };

export interface ObjectRecord {
  readonly id: string;
  readonly kind: ObjectKind;
  readonly accountId: number;
  readonly keyId: number;
  readonly keyGroup: string | null;
  readonly createdAt: number;
  readonly tag: string | null;
  deletedAt: number | null;
  follow: Follow | null;
}

export interface RegistryOptions {
  /** Records kept in memory (default 20,000; followed and unwritten ones are never dropped). */
  readonly cacheSize?: number;
  /** Several instances: where they all publish their objects and deletions (none on one). */
  readonly directory?: ObjectDirectory | undefined;
}

export class ObjectRegistry {
  /** Insertion-ordered, so the first entries are the oldest when the cache must shrink. */
  private readonly recent = new Map<string, ObjectRecord>();
  private readonly cacheSize: number;
  private readonly directory: ObjectDirectory | undefined;
  /** Publications to the directory a caller may still wait for (see `whenShared`). */
  private readonly publishing = new WeakMap<ObjectRecord, Promise<boolean>>();

  constructor(
    private readonly repo: ObjectRepository,
    private readonly writer: StateWriter,
    options: number | RegistryOptions = {},
  ) {
    const opts = typeof options === 'number' ? { cacheSize: options } : options;
    this.cacheSize = opts.cacheSize ?? 20_000;
    this.directory = opts.directory;
  }

  /** True when objects are shared with other instances (a directory was given). */
  get shared(): boolean {
    return this.directory !== undefined;
  }

  /** The record of `id`, from memory or the store; undefined when the gateway never saw it. */
  async get(id: string): Promise<ObjectRecord | undefined> {
    if (this.directory !== undefined) return this.getShared(id, this.directory);
    const hit = this.recent.get(id);
    if (hit !== undefined) return hit;
    const row = await this.repo.get(id);
    if (row === undefined) return undefined;
    // A concurrent lookup or a creation may have cached it meanwhile: keep one object per id.
    const again = this.recent.get(id);
    if (again !== undefined) return again;
    const rec = fromRow(row);
    if (rec !== undefined) this.remember(rec);
    return rec;
  }

  /** The record of `id` if it is in memory (no store read). */
  peek(id: string): ObjectRecord | undefined {
    return this.recent.get(id);
  }

  /** Records an object just created through the gateway (and publishes it: `whenShared`). */
  add(rec: ObjectRecord): void {
    // Queued first: the cache keeps every record the writer still holds.
    this.save(rec);
    this.remember(rec);
    if (this.directory !== undefined) this.publishing.set(rec, this.directory.publish(sharedOf(rec)));
  }

  /** Marks an object deleted: from now on it is answered as missing without asking upstream. */
  markDeleted(rec: ObjectRecord, now: number): void {
    if (rec.deletedAt !== null) return;
    rec.deletedAt = now;
    this.save(rec);
    if (this.directory === undefined) return;
    const deleted = this.directory.publishDeleted(rec.id, now);
    const created = this.publishing.get(rec);
    this.publishing.set(
      rec,
      created === undefined ? deleted : Promise.all([created, deleted]).then(([a, b]) => a && b),
    );
  }

  /**
   * Several instances: resolves once every instance can find what this one just recorded about
   * `recs` (created, deleted): in the directory, or in the store when the directory could not take
   * it (the writer is flushed then; the promise rejects if that fails). Undefined on one instance
   * and when none of `recs` has anything unsent, so the usual request waits for nothing.
   */
  whenShared(recs: Iterable<ObjectRecord | undefined>): Promise<void> | undefined {
    if (this.directory === undefined) return undefined;
    const pending: Array<Promise<boolean>> = [];
    for (const rec of recs) {
      const p = rec === undefined ? undefined : this.publishing.get(rec);
      if (rec === undefined || p === undefined) continue;
      this.publishing.delete(rec);
      pending.push(p);
    }
    if (pending.length === 0) return undefined;
    return Promise.all(pending).then(async (done) => {
      if (!done.every(Boolean)) await this.writer.flush();
    });
  }

  /** Changes the billing state of a followed object (queued with the settlement's money). */
  setFollow(rec: ObjectRecord, follow: Follow | null): void {
    rec.follow = follow;
    this.save(rec);
  }

  /** Records of an account's live objects of one kind, one page in list order. */
  async page(
    query: Omit<Parameters<ObjectRepository['page']>[0], 'after' | 'before'> & {
      readonly after?: ObjectRecord | undefined;
      readonly before?: ObjectRecord | undefined;
    },
  ): Promise<ObjectRecord[]> {
    // Objects created a moment ago may still wait in the write batch: lists must include them.
    await this.writer.flush();
    const cursor = (r: ObjectRecord | undefined) =>
      r === undefined ? undefined : { createdAt: r.createdAt, id: r.id };
    const rows = await this.repo.page({ ...query, after: cursor(query.after), before: cursor(query.before) });
    const out: ObjectRecord[] = [];
    for (const row of rows) {
      const rec = this.recent.get(row.id) ?? fromRow(row);
      if (rec !== undefined) out.push(rec);
    }
    // Several instances: objects created elsewhere a moment ago may not be stored yet.
    return this.directory === undefined ? out : this.withRecent(this.directory, query, out);
  }

  /** Every object whose work is still followed (read once at start-up). */
  async openFollows(): Promise<ObjectRecord[]> {
    const rows = await this.repo.openFollows();
    const out: ObjectRecord[] = [];
    for (const row of rows) {
      const rec = this.recent.get(row.id) ?? fromRow(row);
      if (rec === undefined) continue;
      this.remember(rec);
      out.push(rec);
    }
    return out;
  }

  /**
   * The records of open follows this instance just claimed (the rows as the claim left them):
   * one object per id, shared with whatever already held it.
   */
  adoptClaimed(rows: readonly ObjectRow[]): ObjectRecord[] {
    const out: ObjectRecord[] = [];
    for (const row of rows) {
      const stored = fromRow(row);
      if (stored?.follow?.state !== 'open') continue;
      const local = this.recent.get(row.id);
      if (local === undefined) {
        this.remember(stored);
        out.push(stored);
      } else if (local.follow?.state !== 'done') {
        local.follow = stored.follow;
        out.push(local);
      }
    }
    return out;
  }

  /** Directory first, then the rows this writer holds, then the store (several instances). */
  private async getShared(id: string, directory: ObjectDirectory): Promise<ObjectRecord | undefined> {
    const entry = await directory.lookup(id);
    let rec: ObjectRecord | undefined;
    if (entry?.object !== undefined) {
      rec = this.recent.get(id);
      if (rec === undefined) {
        rec = fromShared(entry.object);
        this.remember(rec);
      }
    } else {
      // Expired from the directory (the store has it by now), or Redis unreachable. Memory is
      // current only for rows this writer still holds: a deletion elsewhere never reached it.
      const local = this.recent.get(id);
      if (local !== undefined && this.writer.holdsObject(id)) rec = local;
      else {
        const row = await this.repo.get(id);
        const stored = row === undefined ? undefined : fromRow(row);
        rec = this.recent.get(id);
        if (rec === undefined) {
          rec = stored;
          if (rec !== undefined) this.remember(rec);
        } else if (rec.deletedAt === null && stored !== undefined && stored.deletedAt !== null) {
          rec.deletedAt = stored.deletedAt;
        }
        // Back into the directory: the next lookups of an old object need no store read.
        if (entry !== undefined && stored !== undefined)
          void directory.refresh(sharedOf(stored), stored.deletedAt);
      }
    }
    const deletedAt = entry?.deletedAt;
    if (rec !== undefined && deletedAt !== undefined && rec.deletedAt === null) rec.deletedAt = deletedAt;
    return rec;
  }

  /**
   * A page from the store merged with the objects the directory saw created a moment ago (not
   * stored yet if another instance created them): the page a single store would have given.
   * The store's page holds the first `limit` rows past the cursors, so the first `limit` of the
   * union are the right ones.
   */
  private async withRecent(
    directory: ObjectDirectory,
    query: Omit<Parameters<ObjectRepository['page']>[0], 'after' | 'before'> & {
      readonly after?: ObjectRecord | undefined;
      readonly before?: ObjectRecord | undefined;
    },
    page: ObjectRecord[],
  ): Promise<ObjectRecord[]> {
    const kind = query.kind;
    if (!isObjectKind(kind)) return page;
    const recent = await directory.recent(query.accountId, kind);
    if (recent === undefined || recent.objects.length === 0) return page;
    const sign = query.order === 'desc' ? -1 : 1;
    // Negative when `a` comes first in the list's order; ids compare bytewise, as in the store.
    const order = (a: Position, b: Position): number =>
      sign * (a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const { after, before } = query;
    const listed = new Set(page.map((r) => r.id));
    const merged = [...page];
    for (const o of recent.objects) {
      if (listed.has(o.id) || recent.deleted.has(o.id)) continue;
      if (o.accountId !== query.accountId || o.kind !== kind) continue;
      if (query.tag !== undefined && o.tag !== query.tag) continue;
      if (after !== undefined && order(o, after) <= 0) continue;
      if (before !== undefined && order(o, before) >= 0) continue;
      let rec = this.recent.get(o.id);
      if (rec === undefined) {
        rec = fromShared(o);
        this.remember(rec);
      }
      if (rec.deletedAt !== null) continue;
      listed.add(o.id);
      merged.push(rec);
    }
    if (merged.length === page.length) return page;
    merged.sort(order);
    // With only `before`, the page is the rows nearest to the cursor (the end of the order).
    const backwards = before !== undefined && after === undefined;
    return backwards ? merged.slice(Math.max(0, merged.length - query.limit)) : merged.slice(0, query.limit);
  }

  private save(rec: ObjectRecord): void {
    this.writer.saveObject(toRow(rec));
  }

  private remember(rec: ObjectRecord): void {
    this.recent.set(rec.id, rec);
    if (this.recent.size <= this.cacheSize) return;
    // Drop the oldest entries that are safely in the store; followed ones stay (the follower holds
    // them anyway) and so do rows still waiting for the writer.
    for (const [id, old] of this.recent) {
      if (this.recent.size <= this.cacheSize) break;
      if (old.follow?.state === 'open' || this.writer.holdsObject(id)) continue;
      this.recent.delete(id);
    }
  }
}

function toRow(rec: ObjectRecord): ObjectRow {
  const f = rec.follow;
  const open = f?.state === 'open' ? f : undefined;
  return {
    id: rec.id,
    kind: rec.kind,
    account_id: rec.accountId,
    key_id: rec.keyId,
    key_group: rec.keyGroup,
    tag: rec.tag,
    created_at: rec.createdAt,
    deleted_at: rec.deletedAt,
    follow: f === null ? null : f.state,
    reserved: open?.reserved ?? 0,
    request_id: open?.requestId ?? null,
    model: open?.model ?? null,
    price_percent: open?.pricePercent ?? null,
    // Null leaves the stored owner as it is (a claim may have moved it; see objectConflictSet).
    follow_owner: open?.owner ?? null,
  };
}

interface Position {
  readonly createdAt: number;
  readonly id: string;
}

function sharedOf(rec: ObjectRecord): SharedObject {
  return {
    id: rec.id,
    kind: rec.kind,
    accountId: rec.accountId,
    keyId: rec.keyId,
    keyGroup: rec.keyGroup,
    createdAt: rec.createdAt,
    tag: rec.tag,
  };
}

function fromShared(o: SharedObject): ObjectRecord {
  return { ...o, deletedAt: null, follow: null };
}

function fromRow(row: ObjectRow): ObjectRecord | undefined {
  if (!isObjectKind(row.kind)) return undefined;
  let follow: Follow | null = null;
  if (row.follow === 'done') follow = { state: 'done' };
  else if (row.follow === 'open') {
    follow = {
      state: 'open',
      reserved: Number(row.reserved),
      requestId: row.request_id ?? row.id,
      model: row.model,
      pricePercent: row.price_percent ?? 100,
      ...(row.follow_owner !== null && { owner: row.follow_owner }),
    };
  }
  return {
    id: row.id,
    kind: row.kind,
    accountId: row.account_id,
    keyId: row.key_id,
    keyGroup: row.key_group,
    createdAt: Number(row.created_at),
    tag: row.tag,
    deletedAt: row.deleted_at === null ? null : Number(row.deleted_at),
    follow,
  };
}
