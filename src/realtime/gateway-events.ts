/**
 * The few realtime events the gateway writes itself: an `error` event to the client (OpenAI's
 * shape, with the catalogue's type, code and message) and a `response.cancel` to upstream. The
 * session numbers them (`evt_gw_…`) so they are recognisable in a client's or upstream's logs.
 */
import type { GatewayError } from '../errors/catalogue.js';

/**
 * An OpenAI realtime `error` event. `clientEventId` names the client event that caused it (as
 * OpenAI does in `error.event_id`), when there is one.
 */
export function errorEvent(eventId: string, err: GatewayError, clientEventId: string | null = null): string {
  return JSON.stringify({
    type: 'error',
    event_id: eventId,
    error: {
      type: err.type,
      code: err.code,
      message: err.message,
      param: err.param,
      event_id: clientEventId,
    },
  });
}

/** A `response.cancel` for one response, or for the response in progress when `responseId` is unset. */
export function cancelEvent(eventId: string, responseId?: string): string {
  return JSON.stringify({
    type: 'response.cancel',
    event_id: eventId,
    ...(responseId !== undefined && { response_id: responseId }),
  });
}
