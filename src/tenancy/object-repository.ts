/**
 * Reads of the `objects` table (writes go through the state writer's batch, in the same
 * transaction as the money they belong to). Written with Kysely so it runs on every backend.
 */
import type { Kysely, Selectable } from 'kysely';
import type { Database, ObjectsTable } from '../store/schema.js';

export type ObjectRow = Selectable<ObjectsTable>;

export interface ObjectPageQuery {
  readonly accountId: number;
  readonly kind: string;
  readonly order: 'asc' | 'desc';
  readonly limit: number;
  /** Rows strictly after this one in `order` (the `after` cursor). */
  readonly after?: { readonly createdAt: number; readonly id: string } | undefined;
  /** Rows strictly before this one in `order` (the `before` cursor). */
  readonly before?: { readonly createdAt: number; readonly id: string } | undefined;
  readonly tag?: string | undefined;
}

export interface ObjectRepository {
  get(id: string): Promise<ObjectRow | undefined>;
  /** One page of an account's live objects of one kind, in (created_at, id) order. */
  page(q: ObjectPageQuery): Promise<ObjectRow[]>;
  /** Objects whose work the gateway follows for billing (open batches, background responses). */
  openFollows(): Promise<ObjectRow[]>;
}

export function createObjectRepository(db: Kysely<Database>): ObjectRepository {
  return {
    async get(id) {
      // Stored ids are checked on creation and never hold a NUL, which PostgreSQL refuses as a
      // parameter: such an id (`%00` in a path) is simply unknown, as on every backend.
      if (id.includes('\u0000')) return undefined;
      return db.selectFrom('objects').selectAll().where('id', '=', id).executeTakeFirst();
    },
    async page(q) {
      // A filter with a NUL (`?purpose=%00`) matches nothing: PostgreSQL refuses it as a parameter.
      if (q.tag?.includes('\u0000') === true) return [];
      const desc = q.order === 'desc';
      let query = db
        .selectFrom('objects')
        .selectAll()
        .where('account_id', '=', q.accountId)
        .where('kind', '=', q.kind)
        .where('deleted_at', 'is', null);
      if (q.tag !== undefined) query = query.where('tag', '=', q.tag);
      // `after` continues in the list's own order; `before` walks back towards its start.
      const after = q.after;
      if (after !== undefined) {
        const cmp = desc ? '<' : '>';
        query = query.where((eb) =>
          eb.or([
            eb('created_at', cmp, after.createdAt),
            eb.and([eb('created_at', '=', after.createdAt), eb('id', cmp, after.id)]),
          ]),
        );
      }
      const before = q.before;
      if (before !== undefined) {
        const cmp = desc ? '>' : '<';
        query = query.where((eb) =>
          eb.or([
            eb('created_at', cmp, before.createdAt),
            eb.and([eb('created_at', '=', before.createdAt), eb('id', cmp, before.id)]),
          ]),
        );
      }
      // With only `before`, the page is the rows nearest to the cursor: read backwards, then flip.
      const backwards = before !== undefined && after === undefined;
      const direction = desc !== backwards ? 'desc' : 'asc';
      const rows = await query
        .orderBy('created_at', direction)
        .orderBy('id', direction)
        .limit(q.limit)
        .execute();
      return backwards ? rows.reverse() : rows;
    },
    async openFollows() {
      return db.selectFrom('objects').selectAll().where('follow', '=', 'open').execute();
    },
  };
}
