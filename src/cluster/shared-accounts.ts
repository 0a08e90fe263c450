/**
 * Accounts shared by several instances: PostgreSQL is the truth, each instance's registry a view.
 *
 * - `run` is the sub-account API's unit of work (accounts/account-unit.ts) on several instances:
 *   the credit other instances lease on the touched accounts is recalled first (when money moves),
 *   then one transaction locks the accounts in id order (as the delta sink and the lease store do),
 *   loads them fresh — "reserved" being what is still leased —, runs the same domain change on
 *   these copies, writes them back with their cards and ledger rows, and commits; every live
 *   instance then reloads the changed accounts before the call returns (an acknowledged notice).
 *   Names and e-mails are checked under one advisory lock, so two instances cannot both take one.
 * - `reload` / `reloadAll` bring the accounts this instance holds in memory in line with the store
 *   (a notice from another instance, a reconcile after a missed one), updating Account objects in
 *   place: requests in flight hold them. Accounts not in memory are read fresh on first use.
 * - `fresh` makes the money of accounts about to be shown current (this instance's settlements
 *   written first, then the store read).
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Logger } from 'pino';
import type { Account } from '../accounts/account.js';
import type { AccountRegistry } from '../accounts/account-registry.js';
import type {
  AccountDirectory,
  AccountUnit,
  AccountWrites,
  UnitPlan,
  UnitView,
} from '../accounts/account-unit.js';
import { foldKey } from '../accounts/account-rules.js';
import { loadSome } from '../accounts/load-accounts.js';
import type { Calendar } from '../billing/calendar.js';
import { GatewayError } from '../errors/catalogue.js';
import { orUnavailable } from '../store/or-unavailable.js';
import type { Database } from '../store/schema.js';
import { accountRow, type LedgerRow, type StateWriter } from '../store/state-writer.js';
import type { LeasePurse } from './lease-purse.js';
import type { Notice } from './notices.js';

/** One lock for every check of a name or e-mail (creations and renames are rare). */
const NAMES_LOCK = 0x70787961; // "pxya"

export interface SharedAccountsDeps {
  readonly db: Kysely<Database>;
  readonly registry: AccountRegistry;
  readonly writer: StateWriter;
  readonly calendar: Calendar;
  readonly purse: LeasePurse;
  readonly log: Logger;
  readonly clock: () => number;
  /** Sends a notice and waits until every live instance applied it (bounded). */
  readonly announce: (notice: Notice) => Promise<void>;
  /** Asks the other instances to give back the unused credit they lease on an account. */
  readonly recall: (accountId: number) => Promise<void>;
}

type Outcome = { readonly ok: true } | { readonly ok: false; readonly error: GatewayError };

export class SharedAccounts implements AccountUnit {
  constructor(private readonly deps: SharedAccountsDeps) {}

  async run<T extends Outcome>(plan: UnitPlan, change: (view: UnitView) => T): Promise<T> {
    const ids = [...new Set(plan.touch)].sort((a, b) => a - b);
    const period = this.deps.calendar.periodOf(this.deps.clock());
    let changed: number[] = [];
    const result = await orUnavailable(
      async () => {
        if (plan.money === true) await this.recallAll(ids);
        return this.transact(plan, ids, period, change, (c) => (changed = c));
      },
      this.deps.log,
      'account change',
    );
    // In effect everywhere, this instance included (its own handler reloads from the store).
    for (const id of changed) await this.deps.announce({ topic: 'account', id });
    return result;
  }

  private transact<T extends Outcome>(
    plan: UnitPlan,
    ids: readonly number[],
    period: ReturnType<Calendar['periodOf']>,
    change: (view: UnitView) => T,
    done: (changed: number[]) => void,
  ): Promise<T> {
    const { db, registry } = this.deps;
    return db.transaction().execute(async (trx) => {
      const names = plan.names ?? [];
      const emails = plan.emails ?? [];
      if (names.length + emails.length > 0 || plan.create === true)
        await sql`select pg_advisory_xact_lock(${NAMES_LOCK})`.execute(trx);
      if (ids.length > 0)
        await sql`select id from accounts where id = any(${ids}::int4[]) order by id for update`.execute(trx);
      const copies = await loadSome(trx, ids, period);
      for (const a of copies.values()) a.reserved = a.leased;
      const taken = await takenNames(trx, names, emails);
      const newId = plan.create === true ? await nextAccountId(trx) : undefined;
      const view = new TxView(registry, copies, taken, newId);
      const r = change(view);
      if (!r.ok) return r;
      done(await write(trx, view));
      return r;
    });
  }

  /**
   * Marks this month's SoftLimit notice of `account` as sent, in the store: true for the one
   * instance that marks it first (it sends the e-mail), false for the others.
   */
  async noticeOnce(account: Account): Promise<boolean> {
    const month = account.month.period;
    const r = await this.deps.db
      .updateTable('accounts')
      .set({ soft_notice_month: month })
      .where('id', '=', account.id)
      .where((eb) => eb.or([eb('soft_notice_month', 'is', null), eb('soft_notice_month', '<>', month)]))
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /**
   * Brings this instance's object of one account in line with the store (gone from the store:
   * forgotten). An account not in memory is left there: it is read fresh on first use.
   */
  async reload(id: number): Promise<void> {
    // A new key may be one this instance remembers as unknown.
    this.deps.registry.forgetUnknownKeys();
    if (this.deps.registry.get(id) === undefined) return;
    const period = this.deps.calendar.periodOf(this.deps.clock());
    const fresh = (await loadSome(this.deps.db, [id], period)).get(id);
    this.apply(id, fresh);
  }

  /** Reconciles the accounts in memory with the store. */
  async reloadAll(): Promise<void> {
    this.deps.registry.forgetUnknownKeys();
    const period = this.deps.calendar.periodOf(this.deps.clock());
    const ids = [...this.deps.registry.all()].map((a) => a.id);
    for (let i = 0; i < ids.length; i += 1000) {
      const chunk = ids.slice(i, i + 1000);
      const fresh = await loadSome(this.deps.db, chunk, period);
      for (const id of chunk) this.apply(id, fresh.get(id));
    }
  }

  /** The money of `accounts` as the store has it, with this instance's settlements written first. */
  async fresh(accounts: readonly Account[]): Promise<void> {
    if (accounts.length === 0) return;
    const period = this.deps.calendar.periodOf(this.deps.clock());
    const fresh = await orUnavailable(
      async () => {
        await this.deps.writer.flush();
        return loadSome(
          this.deps.db,
          accounts.map((a) => a.id),
          period,
        );
      },
      this.deps.log,
      'fresh balance',
    );
    for (const a of accounts) {
      const f = fresh.get(a.id);
      if (f === undefined) continue;
      a.cards = f.cards;
      a.creditUsed = f.creditUsed;
      a.creditGranted = f.creditGranted;
      a.requests = f.requests;
      a.day = f.day;
      a.month = f.month;
    }
  }

  private apply(id: number, fresh: Account | undefined): void {
    const { registry } = this.deps;
    const local = registry.get(id);
    if (local === undefined) return;
    if (fresh === undefined) {
      registry.remove(local);
      return;
    }
    const old = { name: local.name, email: local.email, keyHash: local.keyHash };
    const { reserved } = local;
    const { leased: _leased, ...state } = fresh as Account & { leased?: number };
    Object.assign(local, state, { reserved });
    if (old.keyHash !== local.keyHash) registry.reindex(local, old);
  }

  private async recallAll(ids: readonly number[]): Promise<void> {
    // Spent credit stays leased until its settlement is written (the delta sink shrinks both).
    await this.deps.writer.flush();
    for (const id of ids) {
      const local = this.deps.registry.get(id);
      if (local === undefined || local.isRoot) continue;
      await this.deps.purse.giveBack(local);
      await this.deps
        .recall(id)
        .catch((err: unknown) =>
          this.deps.log.warn({ err, account: id }, 'could not recall the credit other instances lease'),
        );
    }
  }
}

/** The registry as one change on several instances sees it: the locked copies first. */
class TxView implements UnitView {
  readonly writes = new Collected();
  readonly registry: AccountDirectory;
  readonly added: Account[] = [];
  readonly removed: Account[] = [];

  constructor(
    local: AccountRegistry,
    readonly copies: ReadonlyMap<number, Account>,
    taken: readonly Taken[],
    newId: number | undefined,
  ) {
    const byId = (id: number): Account | undefined => copies.get(id) ?? local.get(id);
    const holder = (id: number, name: string, email: string): Account =>
      byId(id) ?? ({ id, name, email } as Account);
    this.registry = {
      allocateId: () => {
        if (newId === undefined) throw new Error('this change did not plan to create an account');
        return newId;
      },
      add: (a) => {
        this.added.push(a);
      },
      remove: (a) => {
        this.removed.push(a);
      },
      reindex: () => undefined,
      byKeyHash: (h) => local.byKeyHash(h),
      get: byId,
      findByName: (name) => {
        const t = taken.find((x) => x.name_key === foldKey(name));
        return t === undefined ? undefined : holder(t.id, t.name, t.email);
      },
      findByEmail: (email) => {
        const t = taken.find((x) => x.email_key === foldKey(email));
        return t === undefined ? undefined : holder(t.id, t.name, t.email);
      },
    };
  }

  account(id: number): Account | undefined {
    return this.copies.get(id);
  }
}

class Collected implements AccountWrites {
  readonly dirty = new Map<number, Account>();
  readonly deleted = new Set<number>();
  readonly ledger: LedgerRow[] = [];
  markDirty(a: Account): void {
    this.dirty.set(a.id, a);
  }
  markDeleted(a: Account): void {
    this.deleted.add(a.id);
    this.dirty.delete(a.id);
  }
  addLedger(row: LedgerRow): void {
    this.ledger.push(row);
  }
}

/** Accounts holding any of these names or e-mails, compared by `foldKey` (the folded columns). */
async function takenNames(
  trx: Transaction<Database>,
  names: readonly string[],
  emails: readonly string[],
): Promise<Taken[]> {
  if (names.length + emails.length === 0) return [];
  return trx
    .selectFrom('accounts')
    .select(['id', 'name', 'email', 'name_key', 'email_key'])
    .where((eb) =>
      eb.or([
        ...(names.length > 0 ? [eb('name_key', 'in', names.map(foldKey))] : []),
        ...(emails.length > 0 ? [eb('email_key', 'in', emails.map(foldKey))] : []),
      ]),
    )
    .execute();
}

interface Taken {
  readonly id: number;
  readonly name: string;
  readonly email: string;
  readonly name_key: string;
  readonly email_key: string;
}

async function nextAccountId(trx: Transaction<Database>): Promise<number> {
  const r = await sql<{
    id: number;
  }>`select nextval(pg_get_serial_sequence('accounts', 'id'))::int4 as id`.execute(trx);
  const id = r.rows[0]?.id;
  if (id === undefined) throw new Error('no id from the accounts sequence');
  return Number(id);
}

/** Writes a change's accounts, cards and ledger rows; returns the ids every instance must reload. */
async function write(trx: Transaction<Database>, view: TxView): Promise<number[]> {
  const { dirty, deleted, ledger } = view.writes;
  for (const id of deleted) {
    await trx.deleteFrom('credit_cards').where('account_id', '=', id).execute();
    await trx.deleteFrom('leases').where('account_id', '=', id).execute();
    await trx.deleteFrom('accounts').where('id', '=', id).execute();
  }
  const created = new Set(view.added.map((a) => a.id));
  for (const a of dirty.values()) {
    const row = accountRow(a);
    if (created.has(a.id)) await trx.insertInto('accounts').values(row).execute();
    else {
      const { id, ...rest } = row;
      await trx.updateTable('accounts').set(rest).where('id', '=', id).execute();
    }
    await trx.deleteFrom('credit_cards').where('account_id', '=', a.id).execute();
    if (a.cards.length > 0) {
      await trx
        .insertInto('credit_cards')
        .values(
          a.cards.map((c) => ({
            account_id: a.id,
            amount: c.amount,
            balance: c.balance,
            granted_at: c.grantedAt,
            expires_at: c.expiresAt,
            reference: c.reference ?? null,
          })),
        )
        .execute();
    }
  }
  if (ledger.length > 0) await trx.insertInto('ledger').values(ledger).execute();
  return [...new Set([...dirty.keys(), ...deleted])];
}
