/**
 * The batch sink of several instances sharing one database: every change is a delta, never an
 * account row written whole, so instances cannot overwrite each other's money. One transaction:
 *
 *   1. insert the usage records, skipping request ids already stored, and keep what went in:
 *      only those are applied below, so a batch written twice (a retry after a lost COMMIT
 *      answer, a replay) bills nothing twice;
 *   2. lock the accounts touched, in id order (the lease store and the sub-account API's
 *      transactions lock the same way, so nothing deadlocks);
 *   3. take each account's cost from its cards, earliest expiry first, in one statement;
 *   4. credit_used / requests += the deltas; the instance's lease and `leased` −= what was spent
 *      from the lease (a lease reclaimed meanwhile — this instance was declared dead — is not
 *      given back twice);
 *   5. ledger rows of the inserted requests, per-day totals, upstream objects.
 *
 * The state writer's account snapshots are not written here: on several instances, account
 * changes go through the sub-account API's own transactions.
 */
import { CompiledQuery, type Kysely } from 'kysely';
import { GATE_REFUSAL, type Batch, type BatchSink, type DailyRow, type LedgerRow } from '../batch-sink.js';
import type { Database } from '../schema.js';
import {
  columnArrays,
  DAILY,
  LEDGER,
  OBJECT,
  unnestInsert,
  UPSERT_DAILY,
  UPSERT_OBJECTS,
  USAGE,
} from './batch-sink.js';

interface Inserted {
  request_id: string;
  account_id: number;
  day: string;
  model: string;
  cost: number;
  prompt_tokens: number;
  completion_tokens: number;
  usage_source: string;
}

export function createPostgresDeltaSink(
  db: Kysely<Database>,
  instanceId: string,
  clock: () => number = Date.now,
): BatchSink {
  const insertUsage = `${unnestInsert('usage_records', USAGE, 'on conflict (request_id) do nothing')}
    returning request_id, account_id, day, model, cost, prompt_tokens, completion_tokens, usage_source`;
  const lockAccounts = 'select id, is_root from accounts where id = any($1::int4[]) order by id for update';
  // Card i pays min(its balance, what is left after the cards before it), earliest expiry first,
  // the order of cards.ts `spend`.
  const spendCards = `
    with want as (select * from unnest($1::int4[], $2::int8[]) as w(account_id, cost)),
    live as (
      select c.id, c.account_id, c.balance,
        sum(c.balance) over (partition by c.account_id order by c.expires_at, c.granted_at, c.id) - c.balance as before
      from credit_cards c join want w on w.account_id = c.account_id
      where c.expires_at > $3 and c.balance > 0
    )
    update credit_cards c set balance = c.balance - least(l.balance, w.cost - l.before)
    from live l join want w on w.account_id = l.account_id
    where c.id = l.id and l.before < w.cost`;
  const applyTotals = `
    with v as (select * from unnest($1::int4[], $2::int8[], $3::int8[], $4::int8[]) as v(id, cost, n, spent)),
    d as (
      select v.id, v.cost, v.n, least(v.spent, coalesce(l.amount, 0)) as from_lease
      from v left join leases l on l.account_id = v.id and l.instance_id = $5
    ),
    lease as (
      update leases l set amount = l.amount - d.from_lease, updated_at = $6
      from d where l.account_id = d.id and l.instance_id = $5 and d.from_lease > 0
    )
    update accounts a set credit_used = a.credit_used + d.cost, requests = a.requests + d.n,
      leased = a.leased - d.from_lease, updated_at = greatest(a.updated_at, $6)
    from d where a.id = d.id`;
  const insertLedger = unnestInsert('ledger', LEDGER);
  const upsertDaily = UPSERT_DAILY;
  const upsertObjects = UPSERT_OBJECTS;

  return {
    async write(b: Batch): Promise<void> {
      const now = clock();
      await db.transaction().execute(async (trx) => {
        const run = async <R>(text: string, params: unknown[]): Promise<R[]> =>
          (await trx.executeQuery<R>(CompiledQuery.raw(text, params))).rows;
        const inserted =
          b.usage.length === 0 ? [] : await run<Inserted>(insertUsage, columnArrays(USAGE, b.usage));
        if (inserted.length > 0) {
          const totals = perAccount(inserted);
          const ids = [...totals.keys()].sort((x, y) => x - y);
          const locked = await run<{ id: number; is_root: number }>(lockAccounts, [ids]);
          const root = new Set(locked.filter((r) => Number(r.is_root) === 1).map((r) => r.id));
          // Root's balance is unlimited: it has no cards to spend from and holds no lease.
          const paying = ids.filter((id) => !root.has(id) && (totals.get(id)?.cost ?? 0) > 0);
          if (paying.length > 0) {
            await run(spendCards, [paying, paying.map((id) => totals.get(id)?.cost ?? 0), now]);
          }
          await run(applyTotals, [
            ids,
            ids.map((id) => totals.get(id)?.cost ?? 0),
            ids.map((id) => totals.get(id)?.n ?? 0),
            ids.map((id) => (root.has(id) ? 0 : (totals.get(id)?.cost ?? 0))),
            instanceId,
            now,
          ]);
          const fresh = new Set(inserted.map((r) => r.request_id));
          const ledger = b.ledger.filter((l) => l.request_id !== null && fresh.has(l.request_id));
          if (ledger.length > 0) await run(insertLedger, columnArrays(LEDGER, ledger));
          const days = daily(inserted);
          if (days.length > 0) await run(upsertDaily, columnArrays(DAILY, days));
        }
        // Ledger rows without a request id do not come from settlements; none should be here.
        const other: LedgerRow[] = b.ledger.filter((l) => l.request_id === null);
        if (other.length > 0) await run(insertLedger, columnArrays(LEDGER, other));
        if (b.objects.length > 0) await run(upsertObjects, columnArrays(OBJECT, b.objects));
      });
    },
  };
}

function perAccount(rows: readonly Inserted[]): Map<number, { cost: number; n: number }> {
  const out = new Map<number, { cost: number; n: number }>();
  for (const r of rows) {
    const t = out.get(r.account_id) ?? { cost: 0, n: 0 };
    t.cost += Number(r.cost);
    // A request refused at the gates is in the request log only: not a request of the account.
    if (r.usage_source !== GATE_REFUSAL) t.n++;
    out.set(r.account_id, t);
  }
  return out;
}

function daily(rows: readonly Inserted[]): DailyRow[] {
  const out = new Map<string, DailyRow>();
  for (const r of rows) {
    if (r.usage_source === GATE_REFUSAL) continue;
    const k = `${r.account_id}\u0000${r.day}\u0000${r.model}`;
    const d = out.get(k);
    if (d === undefined) {
      out.set(k, {
        account_id: r.account_id,
        day: r.day,
        model: r.model,
        requests: 1,
        cost: Number(r.cost),
        prompt_tokens: Number(r.prompt_tokens),
        completion_tokens: Number(r.completion_tokens),
      });
    } else {
      d.requests++;
      d.cost += Number(r.cost);
      d.prompt_tokens += Number(r.prompt_tokens);
      d.completion_tokens += Number(r.completion_tokens);
    }
  }
  return [...out.values()];
}
