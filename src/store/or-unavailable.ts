/**
 * Store work on behalf of a caller who is waiting for an answer (an admin call, a dashboard read):
 * a failure of the database itself answers 503 `store_unavailable` — the caller may try again,
 * nothing was changed — instead of a 500. The cause is logged; errors the gateway raised on
 * purpose pass through as they are.
 */
import type { Logger } from 'pino';
import { GatewayError } from '../errors/catalogue.js';

export async function orUnavailable<T>(work: () => Promise<T>, log: Logger, what: string): Promise<T> {
  try {
    return await work();
  } catch (err: unknown) {
    if (err instanceof GatewayError) throw err;
    log.error({ err }, `${what}: the database failed`);
    throw new GatewayError('store_unavailable');
  }
}
