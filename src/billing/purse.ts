/**
 * Where an account's credit is spent from, as the meter sees it. One process alone spends
 * straight from the account's cards (`CardPurse`: the cards in memory are the truth). Several
 * instances over one database each spend from a credit lease, a slice of the balance the
 * instance holds (cluster/lease-purse.ts): the meter runs the same gates and the same
 * reserve → settle, and asks the purse for more when a reservation does not fit.
 */
import type { Account } from '../accounts/account.js';
import { liveBalance, spend } from '../accounts/cards.js';
import type { Micros } from './money.js';

/**
 * What still limits an account after a top-up: its balance, its monthly HardLimit, or the
 * database that holds the shared balance (unreachable).
 */
export type Shortfall = 'balance' | 'hard-limit' | 'store';

export interface Purse {
  /** Credit `account` can still reserve here (not counting what is reserved already). */
  available(account: Account, now: number): Micros;
  /**
   * Takes up to `cost` for a settled request; returns what was taken. Never more than there is:
   * an underestimated prompt is absorbed, not owed.
   */
  take(account: Account, cost: Micros, now: number): Micros;
  /** False when more credit can never appear by asking (the cards in memory are all there is). */
  readonly canTopUp: boolean;
  /**
   * Tries to make `want` reservable here. Resolves to what still limits the account, or
   * undefined when `want` fits now.
   */
  topUp(account: Account, want: Micros): Promise<Shortfall | undefined>;
}

/** One process alone: the cards in memory are the account's credit. */
export class CardPurse implements Purse {
  readonly canTopUp = false;

  available(account: Account, now: number): Micros {
    return liveBalance(account.cards, now) - account.reserved;
  }

  take(account: Account, cost: Micros, now: number): Micros {
    const result = spend(account.cards, cost, now);
    account.cards = result.cards;
    return result.spent;
  }

  topUp(): Promise<Shortfall | undefined> {
    return Promise.resolve('balance');
  }
}
