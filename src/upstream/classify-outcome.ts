/**
 * Classifies one upstream attempt into an outcome the retry loop and the key pool act on. This is
 * the only place that reads upstream status codes and error codes to decide what happens next.
 */

export type UpstreamOutcome =
  /** 1xx–3xx: deliver to the client. */
  | { readonly kind: 'ok' }
  /** The client's own error (400, 404, 413, 422, ...): deliver, do not retry, key is fine. */
  | { readonly kind: 'client-error' }
  /** 5xx, connection failure or timeout: try another key; counts toward outlier ejection. */
  | { readonly kind: 'transient'; readonly reason: string }
  /** 429 rate limit or 403: cool this key, try another. */
  | { readonly kind: 'rate-limited'; readonly reason: string; readonly retryAfterMs: number | undefined }
  /** Out of credit upstream: park this key, try another. */
  | { readonly kind: 'key-quota'; readonly reason: string }
  /** The key itself is rejected: disable it, try another. */
  | { readonly kind: 'key-invalid'; readonly reason: string };

export type OutcomeKind = UpstreamOutcome['kind'];

/** Outcomes after which the same request is worth sending again with a different key. */
export function isRetryable(outcome: UpstreamOutcome): boolean {
  return outcome.kind !== 'ok' && outcome.kind !== 'client-error';
}

const QUOTA_CODES = new Set([
  'insufficient_quota',
  'billing_hard_limit_reached',
  'billing_not_active',
  'access_terminated',
]);
const INVALID_CODES = new Set([
  'invalid_api_key',
  'account_deactivated',
  'invalid_organization',
  'organization_deactivated',
]);

/** Pulls `error.code` and `error.type` out of an upstream error body, tolerating garbage. */
export function errorCodes(body: Buffer | undefined): { code: string | undefined; type: string | undefined } {
  if (body === undefined || body.length === 0 || body.length > 65_536)
    return { code: undefined, type: undefined };
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    if (typeof parsed !== 'object' || parsed === null) return { code: undefined, type: undefined };
    const err = (parsed as { error?: unknown }).error;
    if (typeof err !== 'object' || err === null) return { code: undefined, type: undefined };
    const { code, type } = err as { code?: unknown; type?: unknown };
    return {
      code: typeof code === 'string' ? code : undefined,
      type: typeof type === 'string' ? type : undefined,
    };
  } catch {
    return { code: undefined, type: undefined };
  }
}

/** Parses Retry-After (seconds or HTTP date) into milliseconds, capped at one hour. */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const secs = Number(value);
  let ms: number;
  if (Number.isFinite(secs)) ms = secs * 1000;
  else {
    const at = Date.parse(value);
    if (Number.isNaN(at)) return undefined;
    ms = at - now;
  }
  return Math.max(0, Math.min(ms, 3_600_000));
}

/** Classifies an HTTP answer; `body` is the (small) error body when status ≥ 400. */
export function classifyResponse(
  status: number,
  retryAfter: string | undefined,
  body: Buffer | undefined,
  now: number,
): UpstreamOutcome {
  if (status < 400) return { kind: 'ok' };
  const { code, type } = errorCodes(body);
  const quota =
    (code !== undefined && QUOTA_CODES.has(code)) || (type !== undefined && QUOTA_CODES.has(type));
  if (quota) return { kind: 'key-quota', reason: code ?? type ?? 'insufficient_quota' };
  if (status === 401) return { kind: 'key-invalid', reason: code ?? 'unauthorized' };
  if (code !== undefined && INVALID_CODES.has(code)) return { kind: 'key-invalid', reason: code };
  if (status === 429) {
    return {
      kind: 'rate-limited',
      reason: code ?? 'rate_limit_exceeded',
      retryAfterMs: parseRetryAfter(retryAfter, now),
    };
  }
  if (status === 403) return { kind: 'rate-limited', reason: code ?? 'forbidden', retryAfterMs: undefined };
  if (status >= 500) return { kind: 'transient', reason: `upstream ${status}` };
  return { kind: 'client-error' };
}
