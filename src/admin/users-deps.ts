/**
 * What the account API (/x-users, /x-dna) and the dashboard read models need, built once by the
 * composition root.
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Account } from '../accounts/account.js';
import type { AccountLoader } from '../accounts/account-loader.js';
import type { AccountRegistry } from '../accounts/account-registry.js';
import type { AccountUnit } from '../accounts/account-unit.js';
import type { Limiter } from '../accounts/rate-limiter.js';
import type { Calendar } from '../billing/calendar.js';
import type { Meter } from '../billing/meter.js';
import type { Micros } from '../billing/money.js';
import type { Secrets } from '../keys/secrets.js';
import type { Database } from '../store/schema.js';
import type { StateWriter } from '../store/state-writer.js';

/** Outgoing e-mail; absent when EMAIL_* is not configured. */
export interface Mailer {
  send(to: string, subject: string, text: string): Promise<void>;
}

export interface UsersDeps {
  readonly registry: AccountRegistry;
  /** Accounts by id, name, e-mail and tree, loaded on first use or read to be shown. */
  readonly accounts: AccountLoader;
  readonly writer: StateWriter;
  /** Runs each change of the sub-account API atomically and durably (see account-unit.ts). */
  readonly unit: AccountUnit;
  /**
   * Makes the money of these accounts current before they are shown: nothing on one process
   * (memory is the truth); on several instances, a reload from the store after this instance's
   * own settlements are written.
   */
  readonly fresh: (accounts: readonly Account[]) => Promise<void>;
  readonly secrets: Secrets;
  readonly calendar: Calendar;
  readonly meter: Meter;
  readonly limiter: Limiter;
  readonly db: Kysely<Database>;
  readonly log: Logger;
  readonly mailer: Mailer | undefined;
  readonly config: {
    readonly userMinBalance: Micros;
    readonly userApiMinBalance: Micros;
    readonly serviceName: string;
  };
  readonly clock: () => number;
}
