/**
 * The caller's IP address. X-Forwarded-For is believed only when the direct peer is a configured
 * trusted proxy, and then walked from the right, skipping further trusted hops, so a client cannot
 * choose its own address by sending the header.
 */
import type { IncomingMessage } from 'node:http';
import { IpMatcher } from '../accounts/ip-matcher.js';

export class ClientAddress {
  private readonly trusted: IpMatcher | undefined;

  constructor(trustedProxies: readonly string[]) {
    this.trusted = trustedProxies.length > 0 ? new IpMatcher(trustedProxies) : undefined;
  }

  of(req: IncomingMessage): string {
    const peer = normalise(req.socket.remoteAddress ?? '');
    if (this.trusted === undefined || !this.trusted.matches(peer)) return peer;
    const xff = req.headers['x-forwarded-for'];
    if (typeof xff !== 'string' || xff === '') return peer;
    const hops = xff.split(',').map((h) => normalise(h.trim()));
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i];
      if (hop === undefined || hop === '') continue;
      if (!this.trusted.matches(hop)) return hop;
    }
    return hops[0] ?? peer;
  }
}

/** Strips the IPv4-mapped IPv6 prefix so `::ffff:1.2.3.4` matches `1.2.3.4` rules. */
export function normalise(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}
