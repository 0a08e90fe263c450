/**
 * The one error catalogue. Every error the gateway itself produces is listed here with its HTTP
 * status and OpenAI-shaped `type`/`code`, and leaves through `errorBody` so clients and SDKs see
 * exactly the shape OpenAI uses: {"error":{"message","type","param","code"}}.
 */
import type { ServerResponse } from 'node:http';

interface Entry {
  readonly status: number;
  readonly type: string;
  /** OpenAI's `code`; null where OpenAI itself sends null (its 404 for an unknown object). */
  readonly code: string | null;
  readonly message: string;
}

export const ERRORS = {
  invalid_json: {
    status: 400,
    type: 'invalid_request_error',
    code: 'invalid_json',
    message: 'We could not parse the JSON body of your request.',
  },
  invalid_body: {
    status: 400,
    type: 'invalid_request_error',
    code: 'invalid_body',
    message: 'The request body must be a JSON object.',
  },
  invalid_value: {
    status: 400,
    type: 'invalid_request_error',
    code: 'invalid_value',
    message: 'Invalid value.',
  },
  unknown_model: {
    status: 400,
    type: 'invalid_request_error',
    code: 'model_not_priced',
    message: 'The model has no price configured on this gateway.',
  },
  missing_key: {
    status: 401,
    type: 'invalid_request_error',
    code: 'invalid_api_key',
    message: "You didn't provide an API key. Provide it in the Authorization header (Bearer <key>).",
  },
  invalid_key: {
    status: 401,
    type: 'invalid_request_error',
    code: 'invalid_api_key',
    message: 'Incorrect API key provided.',
  },
  metrics_token_required: {
    status: 401,
    type: 'invalid_request_error',
    code: 'invalid_api_key',
    message:
      'GET /metrics needs the metrics token (METRICS_TOKEN) in the Authorization header (Bearer <token>).',
  },
  account_disabled: {
    status: 401,
    type: 'invalid_request_error',
    code: 'account_deactivated',
    message: 'This account is disabled.',
  },
  insufficient_balance: {
    status: 402,
    type: 'insufficient_quota',
    code: 'insufficient_quota',
    message: 'Insufficient balance',
  },
  hard_limit_reached: {
    status: 402,
    type: 'insufficient_quota',
    code: 'insufficient_quota',
    message: 'Insufficient balance: the monthly hard limit is reached',
  },
  forbidden: {
    status: 403,
    type: 'permission_error',
    code: 'forbidden',
    message: 'This key may not do that.',
  },
  root_only: {
    status: 403,
    type: 'permission_error',
    code: 'root_only',
    message: 'Only the root key may manage upstream keys.',
  },
  ip_not_allowed: {
    status: 403,
    type: 'permission_error',
    code: 'ip_not_allowed',
    message: 'Requests from this IP address are not allowed for this key.',
  },
  model_not_allowed: {
    status: 403,
    type: 'permission_error',
    code: 'model_not_allowed',
    message: 'This key may not use this model.',
  },
  not_ancestor: {
    status: 403,
    type: 'permission_error',
    code: 'not_ancestor',
    message: 'The account is not a descendant of this key.',
  },
  api_balance_too_low: {
    status: 403,
    type: 'permission_error',
    code: 'balance_below_api_minimum',
    message: 'Your balance is too low to use the sub-account API.',
  },
  endpoint_not_allowed: {
    status: 403,
    type: 'permission_error',
    code: 'endpoint_not_allowed',
    message: 'This gateway does not forward this endpoint.',
  },
  objects_apart: {
    status: 400,
    type: 'invalid_request_error',
    code: 'objects_in_different_organizations',
    message: 'The objects this request names are held by different upstream organizations.',
  },
  not_found: { status: 404, type: 'invalid_request_error', code: 'not_found', message: 'Unknown route.' },
  object_not_found: {
    status: 404,
    type: 'invalid_request_error',
    code: null,
    message: 'No such object.',
  },
  account_not_found: {
    status: 404,
    type: 'invalid_request_error',
    code: 'account_not_found',
    message: 'No such account.',
  },
  key_not_found: {
    status: 404,
    type: 'invalid_request_error',
    code: 'key_not_found',
    message: 'No such upstream key.',
  },
  method_not_allowed: {
    status: 405,
    type: 'invalid_request_error',
    code: 'method_not_allowed',
    message: 'Method not allowed on this route.',
  },
  duplicate: { status: 409, type: 'invalid_request_error', code: 'duplicate', message: 'Already exists.' },
  conflict: { status: 409, type: 'invalid_request_error', code: 'conflict', message: 'Conflict.' },
  upgrade_required: {
    status: 426,
    type: 'invalid_request_error',
    code: 'upgrade_required',
    message: 'The Realtime API is a WebSocket endpoint: connect with Upgrade: websocket.',
  },
  body_too_large: {
    status: 413,
    type: 'invalid_request_error',
    code: 'request_too_large',
    message: 'The request body is too large.',
  },
  session_idle_timeout: {
    status: 408,
    type: 'invalid_request_error',
    code: 'session_idle_timeout',
    message: 'The realtime session was closed after a period without any event.',
  },
  session_expired: {
    status: 408,
    type: 'invalid_request_error',
    code: 'session_expired',
    message: 'The realtime session reached its maximum duration.',
  },
  rate_limited: {
    status: 429,
    type: 'requests',
    code: 'rate_limit_exceeded',
    message: 'Rate limit reached for requests per minute.',
  },
  internal: {
    status: 500,
    type: 'server_error',
    code: 'internal_error',
    message: 'The gateway had an internal error.',
  },
  upstream_unreachable: {
    status: 502,
    type: 'server_error',
    code: 'upstream_unreachable',
    message: 'The upstream API could not be reached.',
  },
  object_unavailable: {
    status: 503,
    type: 'server_error',
    code: 'object_unavailable',
    message: 'The upstream key that holds this object is not available (disabled or removed).',
  },
  limiter_unavailable: {
    status: 503,
    type: 'server_error',
    code: 'rate_limiter_unavailable',
    message: 'The shared rate limiter cannot be reached right now; try again in a moment.',
  },
  store_unavailable: {
    status: 503,
    type: 'server_error',
    code: 'store_unavailable',
    message: 'The database cannot be reached right now; try again in a moment.',
  },
  upstream_invalid_response: {
    status: 502,
    type: 'server_error',
    code: 'upstream_invalid_response',
    message: 'The upstream API answered with a body that is not JSON.',
  },
  no_upstream_key: {
    status: 503,
    type: 'server_error',
    code: 'no_upstream_key',
    message: 'No upstream API key is available right now.',
  },
  shutting_down: {
    status: 503,
    type: 'server_error',
    code: 'server_shutting_down',
    message: 'The gateway is shutting down; connect again in a moment.',
  },
  upstream_timeout: {
    status: 504,
    type: 'server_error',
    code: 'upstream_timeout',
    message: 'The upstream API did not answer in time.',
  },
} as const satisfies Record<string, Entry>;

export type ErrorName = keyof typeof ERRORS;

/** An error the gateway answers with; thrown or returned by handlers, serialised in one place. */
export class GatewayError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: string | null;
  constructor(
    readonly errorName: ErrorName,
    message?: string,
    readonly param: string | null = null,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    const entry = ERRORS[errorName];
    super(message ?? entry.message);
    this.status = entry.status;
    this.type = entry.type;
    this.code = entry.code;
  }
}

export function errorBody(
  message: string,
  type: string,
  code: string | null,
  param: string | null = null,
): string {
  return JSON.stringify({ error: { message, type, param, code } });
}

/** Writes a GatewayError as an OpenAI-shaped JSON response (no-op when headers were already sent). */
export function sendError(
  res: ServerResponse,
  err: GatewayError,
  extraHeaders: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorBody(err.message, err.type, err.code, err.param);
  res.writeHead(err.status, {
    ...extraHeaders,
    ...err.headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}
