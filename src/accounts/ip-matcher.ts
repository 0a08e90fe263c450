/**
 * Matches IP addresses against a list of IPs and CIDR ranges (IPv4 and IPv6), using node's own
 * BlockList so the parsing and range logic is the platform's, not ours.
 */
import { BlockList, isIP } from 'node:net';

export class IpMatcher {
  private readonly list = new BlockList();

  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const parsed = parseIpEntry(entry);
      if (parsed === undefined) throw new RangeError(`not an IP address or CIDR range: ${entry}`);
      if (parsed.prefix === undefined) this.list.addAddress(parsed.ip, parsed.family);
      else this.list.addSubnet(parsed.ip, parsed.prefix, parsed.family);
    }
  }

  matches(ip: string): boolean {
    const family = isIP(ip);
    if (family === 0) return false;
    return this.list.check(ip, family === 4 ? 'ipv4' : 'ipv6');
  }
}

export function parseIpEntry(
  entry: string,
): { ip: string; prefix: number | undefined; family: 'ipv4' | 'ipv6' } | undefined {
  const [ip = '', prefixText, extra] = entry.trim().split('/');
  if (extra !== undefined) return undefined;
  const version = isIP(ip);
  if (version === 0) return undefined;
  const family = version === 4 ? 'ipv4' : 'ipv6';
  if (prefixText === undefined) return { ip, prefix: undefined, family };
  const prefix = Number(prefixText);
  const max = version === 4 ? 32 : 128;
  if (!/^\d+$/.test(prefixText) || prefix > max) return undefined;
  return { ip, prefix, family };
}

export function isValidIpEntry(entry: string): boolean {
  return parseIpEntry(entry) !== undefined;
}
