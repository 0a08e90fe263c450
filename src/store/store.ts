/**
 * The store as the rest of the gateway sees it: one Kysely handle over the shared schema, plus the
 * capabilities in which backends differ (how a batch is written fastest, whether other processes
 * can reach the same data and must register as instances). Callers use the capabilities they are
 * given and never ask which backend they are on. `openStore` opens the backend the config names;
 * each backend lives in its own folder with mirrored file names (sqlite/, postgres/).
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { BatchSink } from './batch-sink.js';
import type { InstanceLiveness } from './instances.js';
import type { LeaseStore } from './postgres/leases.js';
import type { PostgresConnection } from './postgres/dsn.js';
import type { Database } from './schema.js';

export interface Store {
  readonly db: Kysely<Database>;
  /** Where the state writer sends its batches: the fastest single transaction this backend offers. */
  readonly batchSink: BatchSink;
  /** For logs and diagnostics only; behaviour goes by the capabilities below. */
  readonly dialect: 'sqlite' | 'postgres';
  /** Where the data is, safe to print (a file path, or user@host:port/database without a password). */
  readonly location: string;
  /**
   * Liveness of the gateway processes using this store, present when other processes can reach
   * the same data (a database server). An embedded file belongs to the process that opened it.
   */
  readonly instances: InstanceLiveness | undefined;
  /**
   * What several instances need to share the money of one database (a server store): credit
   * leases, and a batch sink that writes deltas only. Absent on an embedded file.
   */
  readonly shared: SharedMoney | undefined;
  /** True when the store answers a trivial query now (readiness); never throws. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

export interface SharedMoney {
  readonly leases: LeaseStore;
  /** The delta-only batch sink of one instance (its leases are spent from in the same step). */
  deltaSink(instanceId: string, clock?: () => number): BatchSink;
}

/** Which store the configuration asks for (built by the config loader). */
export type StoreChoice =
  | { readonly kind: 'sqlite'; readonly dataDir: string }
  | { readonly kind: 'postgres'; readonly connection: PostgresConnection };

/**
 * A start-up failure that one sentence explains (server unreachable, login refused, another
 * instance running): main prints only the message, without a stack trace.
 */
export class StoreStartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreStartupError';
  }
}

/**
 * Opens (and migrates) the store `choice` names. The backend's module is loaded here and only
 * here, so an embedded install never loads the PostgreSQL driver and vice versa.
 */
export async function openStore(choice: StoreChoice, log: Logger): Promise<Store> {
  switch (choice.kind) {
    case 'sqlite': {
      const { openSqliteStore } = await import('./sqlite/open-store.js');
      return openSqliteStore(choice.dataDir);
    }
    case 'postgres': {
      const { openPostgresStore } = await import('./postgres/open-store.js');
      return openPostgresStore(choice.connection, log);
    }
  }
}
