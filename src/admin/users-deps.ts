/**
 * What the account API (/x-users, /x-dna) and the dashboard read models need, built once by the
 * composition root.
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { AccountRegistry } from '../accounts/account-registry.js';
import type { RateLimiter } from '../accounts/rate-limiter.js';
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
  readonly writer: StateWriter;
  readonly secrets: Secrets;
  readonly calendar: Calendar;
  readonly meter: Meter;
  readonly limiter: RateLimiter;
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
