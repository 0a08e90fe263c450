/**
 * Who follows each open batch and background response when several instances share one
 * PostgreSQL: `objects.follow_owner`, the id of the instance that polls it and settles it
 * (tenancy/follower.ts). The owner is written with the object when its creator starts following
 * it, and moved only here, by a claim: one UPDATE from the owner it names, so when two survivors
 * claim the same dead instance's follows each row goes to exactly one of them (the second UPDATE
 * re-reads the row after the first committed and no longer matches).
 *
 * An owner is abandoned when the cluster's heartbeat does not see it live AND its `instances` row
 * is missing or older than `staleAfterMs` (the lease janitor's rule, cluster/sharing.ts): a live
 * instance that lost Redis for a moment keeps its follows. The fast path after a crash is the
 * heartbeat's death handler (`Follower.claimFrom`), which runs on one survivor within seconds.
 */
import { sql, type Kysely } from 'kysely';
import type { Database } from '../store/schema.js';
import { STALE_AFTER_MS } from '../store/instances.js';
import type { FollowClaims } from '../tenancy/follower.js';

export interface FollowClaimsOptions {
  readonly db: Kysely<Database>;
  /** This instance's id (the `instances` row and the heartbeat use the same one). */
  readonly instanceId: string;
  /** Instances the cluster's heartbeat sees alive (`cluster.heartbeat.liveInstances`). */
  readonly liveInstances: () => Promise<readonly string[]>;
  /** An owner whose `instances` row beat within this is alive (default 3 × STALE_AFTER_MS). */
  readonly staleAfterMs?: number;
}

/** Ids per `owners` query (a parameter each). */
const CHUNK = 1_000;

/** Epoch milliseconds by the server's clock, as int8 (as the instances table). */
const NOW = sql<number>`(extract(epoch from clock_timestamp()) * 1000)::int8`;

export function createFollowClaims(opts: FollowClaimsOptions): FollowClaims {
  const { db, instanceId: self } = opts;
  const staleAfterMs = opts.staleAfterMs ?? 3 * STALE_AFTER_MS;
  return {
    self,
    async claim(from) {
      let update = db.updateTable('objects').set({ follow_owner: self }).where('follow', '=', 'open');
      update =
        from === null ? update.where('follow_owner', 'is', null) : update.where('follow_owner', '=', from);
      return update.returningAll().execute();
    },
    async abandoned() {
      const live = new Set(await opts.liveInstances());
      const rows = await sql<{ owner: string | null }>`
        select distinct o.follow_owner as owner from objects o
        where o.follow = 'open' and (o.follow_owner is null or not exists (
          select 1 from instances i
          where i.id = o.follow_owner and i.heartbeat_at > ${NOW} - ${staleAfterMs}::int8))`.execute(db);
      return rows.rows
        .map((r) => r.owner)
        .filter((owner) => owner === null || (owner !== self && !live.has(owner)));
    },
    async owners(ids) {
      const out = new Map<string, string | null>();
      for (let i = 0; i < ids.length; i += CHUNK) {
        const rows = await db
          .selectFrom('objects')
          .select(['id', 'follow_owner'])
          .where('id', 'in', ids.slice(i, i + CHUNK))
          .execute();
        for (const r of rows) out.set(r.id, r.follow_owner);
      }
      return out;
    },
  };
}
