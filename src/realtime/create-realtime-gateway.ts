/**
 * Builds the realtime gateway from the frozen config and the app's services (the composition
 * root calls this once), and derives the session timing from the config.
 */
import type { Logger } from 'pino';
import type { AccountLoader } from '../accounts/account-loader.js';
import type { AccountRegistry } from '../accounts/account-registry.js';
import { Authenticator } from '../accounts/authenticate.js';
import type { Meter } from '../billing/meter.js';
import type { PriceTable } from '../billing/price-table.js';
import type { Config } from '../config/config.js';
import { ClientAddress } from '../http/client-address.js';
import type { KeyPool } from '../keys/key-pool.js';
import type { Secrets } from '../keys/secrets.js';
import type { Metrics } from '../observability/metrics.js';
import { RealtimeGateway } from './realtime-gateway.js';
import type { SessionTiming } from './realtime-session.js';

/** How long cancelled responses may take to report their usage when a session ends. */
const CANCEL_GRACE_MS = 2_000;
/** How long closing handshakes may take before the sockets are cut. */
const CLOSE_GRACE_MS = 1_000;

export interface RealtimeServices {
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly meter: Meter;
  readonly prices: PriceTable;
  readonly pool: KeyPool;
  readonly registry: AccountRegistry;
  readonly accounts: AccountLoader;
  readonly secrets: Secrets;
  readonly isDraining: () => boolean;
}

/**
 * Session timing from the config. Peers are pinged three times per idle timeout (at most every
 * 30 s), so a dead peer is found well before the idle timeout would end the session anyway.
 */
export function realtimeTiming(config: Config): SessionTiming {
  return {
    idleTimeoutMs: config.realtimeIdleTimeoutMs,
    maxSessionMs: config.realtimeMaxSessionMs,
    pingIntervalMs: Math.min(30_000, Math.max(50, Math.floor(config.realtimeIdleTimeoutMs / 3))),
    cancelGraceMs: CANCEL_GRACE_MS,
    closeGraceMs: CLOSE_GRACE_MS,
  };
}

export function createRealtimeGateway(config: Config, services: RealtimeServices): RealtimeGateway {
  return new RealtimeGateway({
    ...services,
    auth: new Authenticator(services.registry, services.accounts, services.secrets),
    clientAddress: new ClientAddress(config.trustedProxies),
    target: { origin: config.upstreamOrigin, basePath: config.upstreamBasePath },
    retry: {
      maxAttempts: config.maxAttempts,
      deadlineMs: config.upstreamTimeoutMs,
      attemptTimeoutMs: config.upstreamAttemptTimeoutMs,
    },
    timing: realtimeTiming(config),
    maxOutputTokensCap: config.maxOutputTokensCap,
  });
}
