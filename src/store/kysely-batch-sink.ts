/**
 * The portable batch sink: the writer's transaction expressed with Kysely, so it runs on any
 * backend Kysely speaks. Each store has a faster sink of its own with the same contract
 * (sqlite/batch-sink.ts, postgres/batch-sink.ts); this one is the reference the contract tests
 * run beside them on every backend, and a starting point for another kind of sink.
 */
import type { Kysely } from 'kysely';
import type { Batch, BatchSink } from './batch-sink.js';
import type { Database } from './schema.js';

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
            .onConflict((oc) => oc.column('id').doUpdateSet(withoutId(o)))
            .execute();
        }
      });
    },
  };
}

function withoutId<T extends { id: unknown }>(row: T): Omit<T, 'id'> {
  const copy: Partial<T> = { ...row };
  delete copy.id;
  return copy as Omit<T, 'id'>;
}
