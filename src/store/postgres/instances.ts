/**
 * The `instances` table on PostgreSQL (the contract and the policies are in ../instances.ts).
 * Registration runs under a transaction-scoped advisory lock, so two instances starting at the
 * same moment see each other instead of both finding the table empty. Every time is the server's
 * clock (`clock_timestamp()`), never a host's.
 */
import { sql, type Kysely } from 'kysely';
import type { InstanceLiveness, LiveInstance } from '../instances.js';
import type { Database } from '../schema.js';

/** Epoch milliseconds by the server's clock, as int8. */
const NOW = sql<number>`(extract(epoch from clock_timestamp()) * 1000)::int8`;
/**
 * Serialises registrations on this database and schema (advisory locks are per database, and two
 * schemas hold two separate gateways); the lock is released at commit or rollback.
 */
const REGISTRATION_LOCK = sql`select pg_advisory_xact_lock(hashtext('proxyxai.instances.' || current_schema()))`;

export function createPostgresInstances(db: Kysely<Database>): InstanceLiveness {
  return {
    async register(self, staleAfterMs, admit) {
      return db.transaction().execute(async (trx) => {
        await REGISTRATION_LOCK.execute(trx);
        await trx
          .deleteFrom('instances')
          .where('heartbeat_at', '<', sql<number>`${NOW} - ${staleAfterMs}::int8`)
          .execute();
        const rows = await trx
          .selectFrom('instances')
          .selectAll()
          .select(sql<number>`${NOW} - heartbeat_at`.as('silent_ms'))
          .where('id', '!=', self.id)
          .orderBy('started_at')
          .execute();
        const others: LiveInstance[] = rows.map((r) => ({
          id: r.id,
          host: r.host,
          pid: r.pid,
          startedAt: r.started_at,
          heartbeatAt: r.heartbeat_at,
          silentMs: Math.max(0, r.silent_ms),
          mode: r.mode === 'shared' ? 'shared' : 'sole',
        }));
        if (!admit(others)) return { registered: false, others };
        await trx
          .insertInto('instances')
          .values({
            id: self.id,
            host: self.host,
            pid: self.pid,
            mode: self.mode,
            started_at: NOW,
            heartbeat_at: NOW,
          })
          .onConflict((oc) => oc.column('id').doUpdateSet({ heartbeat_at: NOW }))
          .execute();
        return { registered: true, others };
      });
    },
    async beat(id) {
      const r = await db
        .updateTable('instances')
        .set({ heartbeat_at: NOW })
        .where('id', '=', id)
        .executeTakeFirst();
      return r.numUpdatedRows > 0n;
    },
    async remove(id) {
      await db.deleteFrom('instances').where('id', '=', id).execute();
    },
  };
}
