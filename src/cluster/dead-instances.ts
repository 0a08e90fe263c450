/**
 * Dead instances: which of some instance ids are dead, and what the accounts a dead instance's
 * journal charges can still pay (journal/replay-shared.ts).
 *
 * Which of some instance ids are dead: the cluster's heartbeat does not see them live AND their
 * `instances` row is missing or older than `staleAfterMs` (the rule of the lease janitor and of
 * follow claims), so an instance that lost Redis for a moment is not taken for dead.
 */
import { sql, type Kysely } from 'kysely';
import type { Database } from '../store/schema.js';

/** Epoch milliseconds by the server's clock, as int8 (as the instances table). */
const NOW = sql<number>`(extract(epoch from clock_timestamp()) * 1000)::int8`;

export async function deadInstances(
  db: Kysely<Database>,
  liveInstances: () => Promise<readonly string[]>,
  ids: readonly string[],
  staleAfterMs: number,
): Promise<string[]> {
  if (ids.length === 0) return [];
  const live = new Set(await liveInstances());
  const rows = await sql<{ id: string }>`
    select id from instances
    where id = any(${[...ids]}::text[]) and heartbeat_at > ${NOW} - ${staleAfterMs}::int8`.execute(db);
  const fresh = new Set(rows.rows.map((r) => r.id));
  return ids.filter((id) => !live.has(id) && !fresh.has(id));
}

/** Per account: live cards less what instances other than `instance` hold leased (≥ 0). */
export async function replayBudgets(
  db: Kysely<Database>,
  instance: string,
  accounts: readonly number[],
  now: number,
): Promise<Map<number, number>> {
  if (accounts.length === 0) return new Map();
  const rows = await sql<{ id: number; live: string; others: string }>`
    select a.id,
      (select coalesce(sum(c.balance), 0) from credit_cards c
         where c.account_id = a.id and c.expires_at > ${now}) as live,
      (select coalesce(sum(l.amount), 0) from leases l
         where l.account_id = a.id and l.instance_id <> ${instance}) as others
    from accounts a where a.id = any(${[...accounts]}::int4[])`.execute(db);
  return new Map(rows.rows.map((r) => [Number(r.id), Math.max(0, Number(r.live) - Number(r.others))]));
}
