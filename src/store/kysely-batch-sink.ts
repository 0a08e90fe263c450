/**
 * The portable batch sink: the writer's transaction expressed with Kysely, so it runs on any
 * backend Kysely speaks. Each store has a faster sink of its own with the same contract
 * (sqlite/batch-sink.ts, postgres/batch-sink.ts); this one is the reference the contract tests
 * run beside them on every backend, and a starting point for another kind of sink.
 */
import { sql, type Kysely } from 'kysely';
import type { Batch, BatchSink } from './batch-sink.js';
import type { Database } from './schema.js';

/** The columns of an object's settlement state: they change together. */
const FOLLOW_STATE = ['follow', 'reserved', 'request_id', 'model', 'price_percent'] as const;

/**
 * The `on conflict (id) do update set` clause of every sink's object upsert (SQLite and
 * PostgreSQL alike). Several instances may write rows of one object from their own view of it (an
 * instance deletes an object another one created or follows), so the stored row only moves
 * forward: a deletion is never undone, a settled follow neither reopens nor loses its state, an
 * open follow is not cleared by a row that never knew it, and the owner of a follow, once written,
 * changes only through a claim (cluster/follow-claims.ts). One instance makes no other transition,
 * so there this is the plain upsert it always was.
 */
export function objectConflictSet(columns: readonly string[]): string {
  const keep = "objects.follow = 'done' or excluded.follow is null";
  return columns
    .filter((c) => c !== 'id')
    .map((c) => {
      if (c === 'deleted_at') return 'deleted_at = coalesce(objects.deleted_at, excluded.deleted_at)';
      if (c === 'follow_owner') return 'follow_owner = coalesce(objects.follow_owner, excluded.follow_owner)';
      if ((FOLLOW_STATE as readonly string[]).includes(c))
        return `${c} = case when ${keep} then objects.${c} else excluded.${c} end`;
      return `${c} = excluded.${c}`;
    })
    .join(', ');
}

export function createKyselyBatchSink(db: Kysely<Database>): BatchSink {
  return {
    async write(snap: Batch): Promise<void> {
      await db.transaction().execute(async (trx) => {
        // Deletes first, so a name freed by a deletion can be taken by an account in the same batch.
        for (const id of snap.deleted) {
          await trx.deleteFrom('credit_cards').where('account_id', '=', id).execute();
          await trx.deleteFrom('accounts').where('id', '=', id).execute();
        }
        for (const row of snap.accounts) {
          const { id, ...rest } = row;
          await trx
            .insertInto('accounts')
            .values(row)
            .onConflict((oc) => oc.column('id').doUpdateSet(rest))
            .execute();
          await trx.deleteFrom('credit_cards').where('account_id', '=', id).execute();
          const cards = snap.cards.get(id) ?? [];
          if (cards.length > 0) {
            await trx
              .insertInto('credit_cards')
              .values(cards.map((c) => ({ ...c, account_id: id })))
              .execute();
          }
        }
        for (let i = 0; i < snap.ledger.length; i += 500) {
          await trx
            .insertInto('ledger')
            .values(snap.ledger.slice(i, i + 500))
            .execute();
        }
        for (let i = 0; i < snap.usage.length; i += 200) {
          await trx
            .insertInto('usage_records')
            .values(snap.usage.slice(i, i + 200))
            .onConflict((oc) => oc.column('request_id').doNothing())
            .execute();
        }
        for (const d of snap.daily) {
          await trx
            .insertInto('usage_daily')
            .values(d)
            .onConflict((oc) =>
              oc.columns(['account_id', 'day', 'model']).doUpdateSet((eb) => ({
                requests: eb('usage_daily.requests', '+', d.requests),
                cost: eb('usage_daily.cost', '+', d.cost),
                prompt_tokens: eb('usage_daily.prompt_tokens', '+', d.prompt_tokens),
                completion_tokens: eb('usage_daily.completion_tokens', '+', d.completion_tokens),
              })),
            )
            .execute();
        }
        for (const o of snap.objects) {
          await trx
            .insertInto('objects')
            .values(o)
            .onConflict((oc) => oc.column('id').doUpdateSet(objectMerge(o)))
            .execute();
        }
      });
    },
  };
}

/** `objectConflictSet` as Kysely update values, for the columns of `row`. */
function objectMerge(row: Batch['objects'][number]) {
  const keep = sql<boolean>`objects.follow = 'done' or excluded.follow is null`;
  const state = <C extends (typeof FOLLOW_STATE)[number]>(c: C) =>
    sql<
      Batch['objects'][number][C]
    >`case when ${keep} then ${sql.ref(`objects.${c}`)} else ${sql.ref(`excluded.${c}`)} end`;
  return {
    kind: row.kind,
    account_id: row.account_id,
    key_id: row.key_id,
    key_group: row.key_group,
    tag: row.tag,
    created_at: row.created_at,
    deleted_at: sql<number | null>`coalesce(objects.deleted_at, excluded.deleted_at)`,
    follow: state('follow'),
    reserved: state('reserved'),
    request_id: state('request_id'),
    model: state('model'),
    price_percent: state('price_percent'),
    follow_owner: sql<string | null>`coalesce(objects.follow_owner, excluded.follow_owner)`,
  };
}
