/**
 * Credit leases in PostgreSQL, the system of record when several instances share one database
 * (the policy — sizes, refills, recalls — is cluster/lease-purse.ts; this file is only the SQL).
 *
 * An account's spendable credit is its live cards minus `accounts.leased`, the sum of its leases;
 * its HardLimit headroom is `hard_limit` minus this month's committed cost minus `leased`. Every
 * change runs in one transaction with the account's row locked, like the delta sink's settlement
 * writes and the sub-account API's transactions, so none of them can interleave on an account.
 */
import { sql, type Kysely } from 'kysely';
import type { Micros } from '../../billing/money.js';
import type { Database } from '../schema.js';

export interface LeaseGrant {
  /** Credit added to this instance's lease now (0: nothing left to lease). */
  readonly granted: Micros;
  /** What stopped the grant short of `want`, if anything. */
  readonly bound: 'balance' | 'hard-limit' | undefined;
  /** Live balance of the account's cards (committed), for the instance's own view. */
  readonly balance: Micros;
  /** This month's committed cost. */
  readonly monthCost: Micros;
}

export interface LeaseStore {
  /**
   * Leases up to `want` to `instanceId`: min(want, spendable, HardLimit headroom). Cards that
   * expire within `horizonMs` do not count as spendable, so no leased credit expires while held.
   */
  acquire(q: {
    readonly accountId: number;
    readonly instanceId: string;
    readonly want: Micros;
    readonly now: number;
    readonly horizonMs: number;
    /** First day of the current month in TZ, "YYYY-MM-01". */
    readonly monthStart: string;
  }): Promise<LeaseGrant>;
  /** Gives back `amount` of this instance's lease (never more than it holds). */
  release(accountId: number, instanceId: string, amount: Micros, now: number): Promise<void>;
  /** Returns every lease of an instance that died (idempotent); how many accounts it touched. */
  reclaim(instanceId: string): Promise<number>;
  /** The leases an instance holds now (its view after a restart, tests). */
  held(instanceId: string): Promise<Array<{ accountId: number; amount: Micros }>>;
  /**
   * Instances that hold leases but have no instances row with a heartbeat fresher than
   * `staleAfterMs` (server clock): gone without anyone noticing (the whole cluster restarted).
   */
  abandoned(staleAfterMs: number): Promise<string[]>;
}

export function createPostgresLeases(db: Kysely<Database>): LeaseStore {
  return {
    async acquire(q) {
      return db.transaction().execute(async (trx) => {
        const account = await sql<{ hard_limit: number; leased: number; is_root: number }>`
          select hard_limit, leased, is_root from accounts where id = ${q.accountId} for update`.execute(trx);
        const row = account.rows[0];
        if (row === undefined) return { granted: 0, bound: 'balance', balance: 0, monthCost: 0 };
        const totals = await sql<{ balance: number; lasting: number; month_cost: number }>`
          select
            (select coalesce(sum(balance), 0) from credit_cards
               where account_id = ${q.accountId} and expires_at > ${q.now}) as balance,
            (select coalesce(sum(balance), 0) from credit_cards
               where account_id = ${q.accountId} and expires_at > ${q.now + q.horizonMs}) as lasting,
            (select coalesce(sum(cost), 0) from usage_daily
               where account_id = ${q.accountId} and day >= ${q.monthStart}) as month_cost`.execute(trx);
        const t = totals.rows[0] ?? { balance: 0, lasting: 0, month_cost: 0 };
        const leased = Number(row.leased);
        const spendable = Math.max(0, Number(t.lasting) - leased);
        const headroom = Math.max(0, Number(row.hard_limit) - Number(t.month_cost) - leased);
        const granted = Math.max(0, Math.min(q.want, spendable, headroom));
        const bound = granted >= q.want ? undefined : headroom < spendable ? 'hard-limit' : 'balance';
        if (granted > 0) {
          await sql`update accounts set leased = leased + ${granted} where id = ${q.accountId}`.execute(trx);
          await sql`
            insert into leases (account_id, instance_id, amount, updated_at)
            values (${q.accountId}, ${q.instanceId}, ${granted}, ${q.now})
            on conflict (account_id, instance_id)
            do update set amount = leases.amount + excluded.amount, updated_at = excluded.updated_at`.execute(
            trx,
          );
        }
        return { granted, bound, balance: Number(t.balance), monthCost: Number(t.month_cost) };
      });
    },
    async release(accountId, instanceId, amount, now) {
      if (amount <= 0) return;
      await db.transaction().execute(async (trx) => {
        await sql`select id from accounts where id = ${accountId} for update`.execute(trx);
        const held = await sql<{ amount: number }>`
          select amount from leases where account_id = ${accountId} and instance_id = ${instanceId}`.execute(
          trx,
        );
        const back = Math.min(amount, Number(held.rows[0]?.amount ?? 0));
        if (back <= 0) return;
        await sql`update accounts set leased = leased - ${back} where id = ${accountId}`.execute(trx);
        await sql`
          update leases set amount = amount - ${back}, updated_at = ${now}
          where account_id = ${accountId} and instance_id = ${instanceId}`.execute(trx);
        await sql`delete from leases where account_id = ${accountId} and instance_id = ${instanceId} and amount <= 0`.execute(
          trx,
        );
      });
    },
    async reclaim(instanceId) {
      return db.transaction().execute(async (trx) => {
        // Lock the accounts in id order, as every other writer does, before moving their credit.
        const ids = await sql<{ account_id: number }>`
          select account_id from leases where instance_id = ${instanceId} order by account_id`.execute(trx);
        if (ids.rows.length === 0) return 0;
        const list = ids.rows.map((r) => r.account_id);
        await sql`select id from accounts where id = any(${list}::int4[]) order by id for update`.execute(
          trx,
        );
        await sql`
          update accounts a set leased = a.leased - l.amount
          from leases l where l.account_id = a.id and l.instance_id = ${instanceId}`.execute(trx);
        await sql`delete from leases where instance_id = ${instanceId}`.execute(trx);
        return list.length;
      });
    },
    async abandoned(staleAfterMs) {
      const rows = await sql<{ instance_id: string }>`
        select distinct l.instance_id from leases l
        where not exists (
          select 1 from instances i where i.id = l.instance_id
            and i.heartbeat_at > (extract(epoch from clock_timestamp()) * 1000)::int8 - ${staleAfterMs}
        )`.execute(db);
      return rows.rows.map((r) => r.instance_id);
    },
    async held(instanceId) {
      const rows = await db
        .selectFrom('leases')
        .select(['account_id', 'amount'])
        .where('instance_id', '=', instanceId)
        .execute();
      return rows.map((r) => ({ accountId: r.account_id, amount: Number(r.amount) }));
    },
  };
}
