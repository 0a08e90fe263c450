/**
 * Header allow-lists in both directions. Only headers that describe the payload travel upstream:
 * never the client's Authorization, cookies, hop-by-hop headers, or anything (Host, Forwarded,
 * X-Forwarded-*) that could steer the request to another host. Responses likewise pass only
 * payload and OpenAI metadata headers; the upstream organisation and its rate-limit counters stay
 * private to the gateway.
 */
import type { IncomingHttpHeaders } from 'node:http';

const REQUEST_ALLOW = ['content-type', 'accept', 'openai-beta', 'idempotency-key', 'user-agent'] as const;

const RESPONSE_ALLOW = new Set([
  'content-type',
  'content-length',
  'content-disposition',
  'content-encoding',
  'content-language',
  'cache-control',
  'retry-after',
  'openai-processing-ms',
  'openai-version',
  'openai-model',
  'x-request-id',
]);

/**
 * Builds the upstream request headers: allow-listed client headers plus the pool key. An
 * `Idempotency-Key` is prefixed with the caller's account (`tenant`): tenants share the upstream
 * organisation, and a key another tenant chose must never return that tenant's answer.
 */
export function upstreamHeaders(
  client: IncomingHttpHeaders,
  secret: string,
  bodyLength: number,
  tenant?: number,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of REQUEST_ALLOW) {
    const v = client[name];
    if (typeof v === 'string') out[name] = v;
  }
  const idem = out['idempotency-key'];
  if (idem !== undefined && tenant !== undefined) out['idempotency-key'] = `acct-${tenant}:${idem}`;
  out['authorization'] = `Bearer ${secret}`;
  // Identity encoding keeps responses parseable for metering; loopback/TLS to OpenAI is not the bottleneck.
  out['accept-encoding'] = 'identity';
  if (bodyLength > 0) out['content-length'] = String(bodyLength);
  return out;
}

/**
 * Filters upstream response headers (undici gives lower-case names) for the client and adds the
 * gateway's own (`own`: request id, rate limits), in one object for `writeHead`.
 */
export function clientHeaders(
  upstream: Record<string, string | string[] | undefined>,
  own: Readonly<Record<string, string>> = {},
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in upstream) {
    if (!RESPONSE_ALLOW.has(name)) continue;
    const v = upstream[name];
    if (v === undefined) continue;
    out[name === 'x-request-id' ? 'x-upstream-request-id' : name] = v;
  }
  for (const name in own) out[name] = own[name] as string;
  return out;
}
