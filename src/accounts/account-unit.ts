/**
 * The unit of work of the sub-account API: a change (create, update, delete, the listing fee)
 * runs as one synchronous domain function over the accounts it touches, and is durable — and, on
 * several instances, in effect on every instance — before it resolves.
 *
 * The domain functions (account-service.ts, account-update.ts) stay the same everywhere: they
 * read and change Account objects and queue ledger rows. What differs is what they run on:
 * - one process (`LocalAccountUnit`): the registry's own objects, then the state writer's flush;
 * - several instances (cluster/shared-accounts.ts): copies loaded under row locks in one database
 *   transaction, where "reserved" is the credit other instances hold in leases, written back in
 *   the same transaction, then announced to every instance.
 */
import type { Logger } from 'pino';
import { GatewayError } from '../errors/catalogue.js';
import { orUnavailable } from '../store/or-unavailable.js';
import type { StateWriter } from '../store/state-writer.js';
import type { Account } from './account.js';
import type { AccountLoader } from './account-loader.js';
import type { AccountRegistry } from './account-registry.js';
import { foldKey } from './account-rules.js';

/**
 * The lookups and tree changes the domain functions use, synchronously: the accounts a change
 * touches and the holders of the names and e-mails it checks are read before it runs.
 */
export interface AccountDirectory extends Pick<
  AccountRegistry,
  'allocateId' | 'add' | 'remove' | 'reindex' | 'byKeyHash' | 'get'
> {
  /** The account whose Name is `name` (`foldKey`), among those the plan named. */
  findByName(name: string): Account | undefined;
  /** The account whose E-mail is `email` (`foldKey`), among those the plan named. */
  findByEmail(email: string): Account | undefined;
}

/** The writes the domain functions queue. */
export type AccountWrites = Pick<StateWriter, 'markDirty' | 'markDeleted' | 'addLedger'>;

/** What a change needs to be prepared for (read before it runs, locked while it runs). */
export interface UnitPlan {
  /** Ids of the accounts the change reads or changes (the caller, the target). */
  readonly touch: readonly number[];
  /** Names and e-mails the change checks for uniqueness (creating, renaming). */
  readonly names?: readonly string[];
  readonly emails?: readonly string[];
  /** The change moves credit (grants, deductions, deletions, Rates, fees). */
  readonly money?: boolean;
  /** The change creates an account (it needs a new id). */
  readonly create?: boolean;
}

export interface UnitView {
  /** A touched account: the registry's own object, or a fresh copy locked for the change. */
  account(id: number): Account | undefined;
  readonly registry: AccountDirectory;
  readonly writes: AccountWrites;
}

type Outcome = { readonly ok: true } | { readonly ok: false; readonly error: GatewayError };

export interface AccountUnit {
  /** Runs `change` atomically; a refusal (`ok: false`) changes nothing. */
  run<T extends Outcome>(plan: UnitPlan, change: (view: UnitView) => T): Promise<T>;
}

/** One process: the registry's objects are the truth; the writer's flush makes them durable. */
export class LocalAccountUnit implements AccountUnit {
  /** Changes run one at a time: each reads the store (names, unloaded accounts) before it runs. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly registry: AccountRegistry,
    private readonly accounts: AccountLoader,
    private readonly writer: StateWriter,
    private readonly log: Logger,
  ) {}

  run<T extends Outcome>(plan: UnitPlan, change: (view: UnitView) => T): Promise<T> {
    const next = this.queue.then(() => this.runNow(plan, change));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async runNow<T extends Outcome>(plan: UnitPlan, change: (view: UnitView) => T): Promise<T> {
    const names = plan.names ?? [];
    const emails = plan.emails ?? [];
    const holders = await orUnavailable(
      async () => {
        // What the names are checked against is the store: everything queued is written first.
        if (names.length + emails.length > 0) await this.writer.flush();
        await this.accounts.load(plan.touch);
        return this.accounts.holders(names, emails);
      },
      this.log,
      'account change',
    );
    // Synchronous from the checks to the last change: no request can interleave.
    const result = change({
      account: (id) => this.registry.get(id),
      registry: localDirectory(this.registry, holders),
      writes: this.writer,
    });
    if (!result.ok) return result;
    await this.persisted();
    return result;
  }

  private async persisted(): Promise<void> {
    try {
      await this.writer.flush();
    } catch (err: unknown) {
      this.log.error({ err }, 'could not persist an account change');
      throw new GatewayError(
        'internal',
        'The change was applied but could not be saved yet; the gateway keeps retrying. Check the account before repeating the call.',
      );
    }
  }
}

/** The registry, with names and e-mails answered from the holders read for this change. */
export function localDirectory(registry: AccountRegistry, holders: readonly Account[]): AccountDirectory {
  const find = (key: string, of: (a: Account) => string): Account | undefined =>
    holders.find((a) => foldKey(of(a)) === key);
  return {
    allocateId: () => registry.allocateId(),
    add: (a) => registry.add(a),
    remove: (a) => registry.remove(a),
    reindex: (a, old) => registry.reindex(a, old),
    byKeyHash: (h) => registry.byKeyHash(h),
    get: (id) => registry.get(id),
    findByName: (name) => find(foldKey(name), (a) => a.name),
    findByEmail: (email) => find(foldKey(email), (a) => a.email),
  };
}
