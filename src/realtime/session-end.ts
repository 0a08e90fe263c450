/**
 * How a realtime session can end, and what each ending means for the two peers: the error event
 * the client is told (when it is still there), the close code and reason each side gets, and how
 * responses that never reported usage are recorded.
 *
 * - client closed: upstream gets the same code and reason (1005 → 1000, 1006 → 1011);
 * - upstream closed: the client gets the same (1005 → 1000; 1006 → 1011, after an error event);
 * - balance, HardLimit or account disabled: error event, client 1008 with the error code as reason
 *   (`insufficient_quota`, `account_deactivated`), upstream 1000;
 * - idle timeout / maximum duration: error event, client 1000 `session_idle_timeout` /
 *   `session_expired`, upstream 1000;
 * - gateway shutting down: error event, both sides 1001 (`server_shutting_down`);
 * - a peer stopped answering pings: it is terminated, the other side gets 1011 (the client after
 *   an error event).
 */
import { GatewayError } from '../errors/catalogue.js';
import { CLOSE_CODE, relayedClose } from './close-codes.js';
import type { Side } from './keep-alive.js';

export type SessionEnd =
  | { readonly kind: 'client-closed'; readonly code: number; readonly reason: string }
  | { readonly kind: 'upstream-closed'; readonly code: number; readonly reason: string }
  /** No money for a response (balance, HardLimit) or the account was disabled. */
  | { readonly kind: 'refused'; readonly error: GatewayError; readonly eventId: string | null }
  | { readonly kind: 'idle' }
  | { readonly kind: 'expired' }
  | { readonly kind: 'shutdown' }
  | { readonly kind: 'peer-dead'; readonly side: Side };

/** How an ending is announced, and what is done with responses that never reported usage. */
export interface Farewell {
  readonly error: GatewayError | undefined;
  readonly errorCause: string | null;
  readonly client: { readonly code: number; readonly reason: string };
  readonly upstream: { readonly code: number; readonly reason: string };
  readonly leftover: 'client-gone' | 'upstream-error';
}

export function farewellFor(why: SessionEnd): Farewell {
  const normal = (error: GatewayError, code: number = CLOSE_CODE.normal): Farewell => ({
    error,
    errorCause: null,
    client: { code, reason: error.code ?? '' },
    upstream: { code, reason: '' },
    leftover: 'upstream-error',
  });
  switch (why.kind) {
    case 'client-closed':
      return {
        error: undefined,
        errorCause: null,
        client: { code: CLOSE_CODE.normal, reason: '' },
        upstream: relayedClose(why.code, why.reason),
        leftover: 'client-gone',
      };
    case 'upstream-closed': {
      const lost = why.code === 1006;
      return {
        error: lost
          ? new GatewayError('upstream_unreachable', 'The upstream realtime connection was lost.')
          : undefined,
        errorCause: null,
        client: relayedClose(why.code, why.reason),
        upstream: { code: CLOSE_CODE.normal, reason: '' },
        leftover: 'upstream-error',
      };
    }
    case 'refused':
      return { ...normal(why.error, CLOSE_CODE.policy), errorCause: why.eventId };
    case 'idle':
      return normal(new GatewayError('session_idle_timeout'));
    case 'expired':
      return normal(new GatewayError('session_expired'));
    case 'shutdown':
      return normal(new GatewayError('shutting_down'), CLOSE_CODE.goingAway);
    case 'peer-dead':
      return why.side === 'client'
        ? {
            error: undefined,
            errorCause: null,
            client: { code: CLOSE_CODE.internal, reason: '' },
            upstream: relayedClose(1006, 'client not responding'),
            leftover: 'client-gone',
          }
        : {
            error: new GatewayError(
              'upstream_unreachable',
              'The upstream realtime connection stopped responding.',
            ),
            errorCause: null,
            client: { code: CLOSE_CODE.internal, reason: 'upstream not responding' },
            upstream: { code: CLOSE_CODE.internal, reason: '' },
            leftover: 'upstream-error',
          };
  }
}
