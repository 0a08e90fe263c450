/**
 * The purse of an instance among several: it spends from credit leases, slices of each account's
 * balance held in PostgreSQL (store/postgres/leases.ts), as in CockroachDB's distributed token
 * bucket for tenant cost control. The meter runs its usual reserve → settle against the lease.
 *
 * - **Top-up**: a reservation that does not fit asks for a lease of the worst case plus about
 *   `windowMs` of the account's recent spend (at least `minLeaseMicros`): one PostgreSQL round
 *   trip, the first request of an account on this instance. When the rest of the balance is held
 *   by other instances, they are asked to give back what they do not use (`lease-recall`), then
 *   the lease is asked for once more.
 * - **Refill** in the background once what is left falls under half the target, so a busy account
 *   rarely waits; **release** of what is unused after `idleMs`, and of everything at shutdown.
 * - **Fencing**: an instance the others declared dead (its leases are then reclaimed by a
 *   survivor) spends nothing more until it has rejoined; see `fence` / `unfence`.
 *
 * A settled cost larger than what is left of the lease (an underestimated prompt) is absorbed,
 * as one process absorbs a cost larger than the balance.
 */
import type { Logger } from 'pino';
import type { Account } from '../accounts/account.js';
import { spend } from '../accounts/cards.js';
import type { Calendar } from '../billing/calendar.js';
import type { Micros } from '../billing/money.js';
import type { Purse, Shortfall } from '../billing/purse.js';
import type { LeaseGrant, LeaseStore } from '../store/postgres/leases.js';

/** Pause after a failed lease request before the store is asked again. */
const STORE_RETRY_MS = 1_000;

export interface LeasePurseOptions {
  readonly instanceId: string;
  readonly leases: LeaseStore;
  readonly calendar: Calendar;
  readonly log: Logger;
  readonly clock?: () => number;
  /** Asks the other instances to give back the unused part of their lease on an account. */
  readonly recall: (accountId: number) => Promise<void>;
  /** Cards expiring sooner than this are never leased (default 10 min). */
  readonly horizonMs?: number;
  /** Spend a lease should last (default 10 s). */
  readonly windowMs?: number;
  /** Smallest lease asked for (default $2). */
  readonly minLeaseMicros?: Micros;
  /** Unused leases go back after this long without a request (default 30 s). */
  readonly idleMs?: number;
}

interface LeaseState {
  /** Credit of the lease still unspent here (reservations not subtracted). */
  held: Micros;
  /** Spend per ms, smoothed. */
  rate: number;
  lastUse: number;
  /** The acquire in flight, so concurrent top-ups share it. */
  acquiring: Promise<void> | undefined;
  /** Until when background refills wait (another instance asked for this account's credit). */
  quietUntil: number;
  /**
   * What top-ups waiting here want in all: a lease request asks for all of it (a burst's requests
   * then find their share), and an idle release leaves the account alone meanwhile.
   */
  wanted: Micros;
}

export class LeasePurse implements Purse {
  readonly canTopUp = true;
  private readonly states = new Map<number, LeaseState>();
  private readonly clock: () => number;
  private readonly horizonMs: number;
  private readonly windowMs: number;
  private readonly minLease: Micros;
  private readonly idleMs: number;
  private fenced = false;
  /** After a failed lease request, no other is tried before this time (the store is away). */
  private storeDownUntil = 0;

  constructor(private readonly opts: LeasePurseOptions) {
    this.clock = opts.clock ?? Date.now;
    this.horizonMs = opts.horizonMs ?? 600_000;
    this.windowMs = opts.windowMs ?? 10_000;
    this.minLease = opts.minLeaseMicros ?? 2_000_000;
    this.idleMs = opts.idleMs ?? 30_000;
  }

  available(account: Account): Micros {
    if (this.fenced) return -account.reserved;
    return (this.states.get(account.id)?.held ?? 0) - account.reserved;
  }

  take(account: Account, cost: Micros, now: number): Micros {
    const st = this.state(account.id, now);
    const taken = this.fenced ? 0 : Math.min(cost, Math.max(0, st.held));
    st.held -= taken;
    // The instance's own view of the cards, for answers about the balance between reloads.
    account.cards = spend(account.cards, taken, now).cards;
    const elapsed = Math.max(1, now - st.lastUse);
    const alpha = Math.min(1, elapsed / this.windowMs);
    st.rate = st.rate * (1 - alpha) + (cost / elapsed) * alpha;
    st.lastUse = now;
    if (st.held - account.reserved < this.target(st, 0) / 2) this.refill(account, st);
    return taken;
  }

  async topUp(account: Account, want: Micros): Promise<Shortfall | undefined> {
    if (this.fenced) return 'store';
    const st = this.state(account.id, this.clock());
    // The store just failed: answer at once rather than make every request wait for it again.
    if (this.clock() < this.storeDownUntil) return this.available(account) >= want ? undefined : 'store';
    st.lastUse = this.clock();
    st.wanted += want;
    try {
      return await this.topUpHeld(account, st, want);
    } finally {
      st.wanted -= want;
    }
  }

  private async topUpHeld(account: Account, st: LeaseState, want: Micros): Promise<Shortfall | undefined> {
    if (st.acquiring !== undefined) await st.acquiring;
    if (this.available(account) >= want) return undefined;
    // Enough for every top-up waiting here (a burst): each will reserve what it wants.
    const first = await this.acquire(
      account,
      st,
      this.target(st, Math.max(want, st.wanted)) - this.available(account),
    );
    if (first === undefined) return 'store';
    if (this.available(account) >= want) return undefined;
    // The rest of the balance may sit in other instances' leases: ask for it, try once more.
    await this.opts
      .recall(account.id)
      .catch((err: unknown) =>
        this.opts.log.warn({ err, account: account.id }, 'could not ask the other instances for credit'),
      );
    const second = await this.acquire(account, st, Math.max(want, st.wanted) - this.available(account));
    if (second === undefined) return 'store';
    if (this.available(account) >= want) return undefined;
    // A bound the store named says what limits the account. Granted in full yet short again:
    // requests here, or a recall from another instance, took it meanwhile; nothing limits the
    // account (the caller may ask again). Only the HardLimit headroom is told apart from it.
    if (second.bound !== undefined) return second.bound;
    if (first.bound === 'hard-limit' && tighterBound(account, second) === 'hard-limit') return 'hard-limit';
    return undefined;
  }

  /** Another instance needs this account's credit: give back what no reservation here holds. */
  async giveBack(account: Account): Promise<void> {
    const st = this.states.get(account.id);
    if (st === undefined) return;
    st.quietUntil = this.clock() + 2_000;
    await this.release(account.id, st, st.held - account.reserved);
  }

  /** True while this instance holds a lease (or is asking for one) on the account. */
  holds(accountId: number): boolean {
    return this.states.has(accountId);
  }

  /** Gives back the unused leases of accounts idle for `idleMs` (the caller runs this periodically). */
  async releaseIdle(accountOf: (id: number) => Account | undefined): Promise<void> {
    const now = this.clock();
    for (const [id, st] of this.states) {
      if (now - st.lastUse < this.idleMs || st.acquiring !== undefined || st.wanted > 0) continue;
      const account = accountOf(id);
      await this.release(id, st, st.held - (account?.reserved ?? 0));
      if (st.held <= 0 && (account?.reserved ?? 0) === 0) this.states.delete(id);
    }
  }

  /** Shutdown, once every request is settled and written: every lease goes back. */
  async releaseAll(): Promise<void> {
    for (const [id, st] of this.states) await this.release(id, st, st.held);
    this.states.clear();
  }

  /**
   * The other instances declared this one dead and a survivor takes its leases back: spend
   * nothing more from them. (They are not released from here: the survivor's reclaim does it.)
   */
  fence(): void {
    this.fenced = true;
    for (const st of this.states.values()) st.held = 0;
  }

  /** True while this instance may spend nothing from its leases (readiness says so). */
  isFenced(): boolean {
    return this.fenced;
  }

  /** Back among the live, once this instance's earlier settlements are written. */
  unfence(): void {
    this.fenced = false;
  }

  /** Credit held here now, per account (metrics, tests). */
  holdings(): Map<number, Micros> {
    return new Map([...this.states].map(([id, st]) => [id, st.held]));
  }

  private target(st: LeaseState, want: Micros): Micros {
    return Math.max(this.minLease, want + Math.ceil(st.rate * this.windowMs));
  }

  private refill(account: Account, st: LeaseState): void {
    const now = this.clock();
    if (st.acquiring !== undefined || this.fenced || now < st.quietUntil || now < this.storeDownUntil) return;
    void this.acquire(account, st, this.target(st, 0) - this.available(account));
  }

  private acquire(account: Account, st: LeaseState, want: Micros): Promise<LeaseGrant | undefined> {
    if (want <= 0) return Promise.resolve({ granted: 0, bound: undefined, balance: 0, monthCost: 0 });
    const now = this.clock();
    const asked = this.opts.leases
      .acquire({
        accountId: account.id,
        instanceId: this.opts.instanceId,
        want: Math.ceil(want),
        now,
        horizonMs: this.horizonMs,
        monthStart: `${this.opts.calendar.periodOf(now).month}-01`,
      })
      .then(
        (grant) => {
          // A fence raised while asking: the survivor's reclaim may already count this grant.
          if (!this.fenced) st.held += grant.granted;
          return grant;
        },
        (err: unknown) => {
          this.storeDownUntil = this.clock() + STORE_RETRY_MS;
          this.opts.log.error({ err, account: account.id }, 'could not lease credit from the store');
          return undefined;
        },
      );
    const done = asked.then(() => undefined);
    st.acquiring = done;
    void done.finally(() => {
      if (st.acquiring === done) st.acquiring = undefined;
    });
    return asked;
  }

  private async release(accountId: number, st: LeaseState, amount: Micros): Promise<void> {
    if (amount <= 0 || this.fenced) return;
    st.held -= amount;
    try {
      await this.opts.leases.release(accountId, this.opts.instanceId, amount, this.clock());
    } catch (err: unknown) {
      // Still held in the store: count it as ours again, the next release returns it.
      st.held += amount;
      this.opts.log.error({ err, account: accountId }, 'could not give credit back to the store');
    }
  }

  private state(id: number, now: number): LeaseState {
    let st = this.states.get(id);
    if (st === undefined) {
      st = { held: 0, rate: 0, lastUse: now, acquiring: undefined, quietUntil: 0, wanted: 0 };
      this.states.set(id, st);
    }
    return st;
  }
}

/** Which bound leaves less to spend, by the store's figures of a grant. */
function tighterBound(account: Account, grant: LeaseGrant): Shortfall {
  return account.hardLimit - grant.monthCost < grant.balance ? 'hard-limit' : 'balance';
}
