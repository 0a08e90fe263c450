/**
 * CORS for the balance and sub-account pages when they are hosted on other hosts (usage.<domain>,
 * sub.<domain> calling api.<domain>). Allowed: origins of the same site as the API host (same last
 * two labels), plus CORS_ORIGINS ("*" = any). Credentials are never allowed: keys travel in the
 * Authorization header, not cookies.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

const ALLOW_HEADERS =
  'authorization, content-type, openai-beta, openai-organization, openai-project, x-stainless-arch, x-stainless-lang, x-stainless-os, x-stainless-package-version, x-stainless-runtime, x-stainless-runtime-version, x-stainless-retry-count, x-stainless-timeout';
// The paging headers of /x-users and /x-logs too: a balance page on another origin pages with them.
const EXPOSE_HEADERS =
  'x-request-id, retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-proxyxai-warning, ' +
  'x-page, x-per-page, x-next-cursor, x-total-count, x-total-pages, link, content-disposition';

export class Cors {
  private readonly any: boolean;
  private readonly origins: Set<string>;

  constructor(configured: readonly string[]) {
    this.any = configured.includes('*');
    this.origins = new Set(configured.filter((o) => o !== '*'));
  }

  allowed(origin: string, host: string | undefined): boolean {
    if (this.any || this.origins.has(origin)) return true;
    let originHost: string;
    try {
      originHost = new URL(origin).hostname;
    } catch {
      return false;
    }
    const apiHost = (host ?? '').replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
    if (originHost === apiHost) return true;
    return site(originHost) !== undefined && site(originHost) === site(apiHost);
  }

  /** Adds CORS headers to a normal response; answers a preflight itself (returns true then). */
  apply(req: IncomingMessage, res: ServerResponse): boolean {
    const origin = req.headers.origin;
    if (origin === undefined) return false;
    const ok = this.allowed(origin, req.headers.host);
    const preflight = req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
    if (ok) {
      res.setHeader('access-control-allow-origin', this.any ? '*' : origin);
      res.setHeader('access-control-expose-headers', EXPOSE_HEADERS);
      res.setHeader('vary', 'origin');
    }
    if (!preflight) return false;
    if (ok) {
      res.setHeader('access-control-allow-methods', 'GET, POST, PUT, DELETE, OPTIONS');
      res.setHeader('access-control-allow-headers', ALLOW_HEADERS);
      res.setHeader('access-control-max-age', '600');
    }
    res.writeHead(ok ? 204 : 403, { 'content-length': '0' });
    res.end();
    return true;
  }
}

/** The last two labels of a DNS name; undefined for IP addresses and single-label hosts. */
function site(host: string): string | undefined {
  if (/^[\d.]+$/.test(host) || host.includes(':')) return undefined;
  const labels = host.split('.');
  return labels.length >= 2 ? labels.slice(-2).join('.') : undefined;
}
