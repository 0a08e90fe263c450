/**
 * Who owns each upstream object, and which pool key holds it. Recent objects are kept in memory
 * (a request naming the response it just created needs no database read); older ones are read
 * from the store on demand. New, deleted and settled objects reach the store through the state
 * writer, in the same transaction as the money that goes with them (a batch's charge and its
 * "settled" mark land together, so a restart can neither bill it twice nor forget it).
 */
import type { Micros } from '../billing/money.js';
import type { ObjectRow, StateWriter } from '../store/state-writer.js';
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

export class ObjectRegistry {
  /** Insertion-ordered, so the first entries are the oldest when the cache must shrink. */
  private readonly recent = new Map<string, ObjectRecord>();

  constructor(
    private readonly repo: ObjectRepository,
    private readonly writer: StateWriter,
    private readonly cacheSize = 20_000,
  ) {}

  /** The record of `id`, from memory or the store; undefined when the gateway never saw it. */
  async get(id: string): Promise<ObjectRecord | undefined> {
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

  /** Records an object just created through the gateway. */
  add(rec: ObjectRecord): void {
    // Queued first: the cache keeps every record the writer still holds.
    this.save(rec);
    this.remember(rec);
  }

  /** Marks an object deleted: from now on it is answered as missing without asking upstream. */
  markDeleted(rec: ObjectRecord, now: number): void {
    if (rec.deletedAt !== null) return;
    rec.deletedAt = now;
    this.save(rec);
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
    return out;
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
  };
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
