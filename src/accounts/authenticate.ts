/**
 * Authentication of account keys from the Authorization header, in `Bearer <key>` or bare `<key>`
 * form (the original's pages send the bare key). Keys are looked up by their HMAC fingerprint in
 * memory: no database read, and the fingerprint comparison is constant-time.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';
import type { Secrets } from '../keys/secrets.js';
import type { Account } from './account.js';
import type { AccountRegistry } from './account-registry.js';

export type AuthResult = { ok: true; account: Account } | { ok: false; error: GatewayError };

export function bearerKey(headers: IncomingHttpHeaders): string | undefined {
  const raw = headers['authorization'];
  if (raw === undefined) return undefined;
  const value = raw.trim();
  const key = /^bearer\s+/i.test(value) ? value.replace(/^bearer\s+/i, '').trim() : value;
  return key === '' ? undefined : key;
}

/**
 * Authenticates account keys. Fingerprinting a key (HMAC-SHA256) is the largest fixed cost of a
 * request, so recently seen keys are remembered with the fingerprint they had; a hit is only
 * trusted while the registry still maps that fingerprint to the same account, so a deleted account
 * or a rotated key stops working at once. The cache is bounded and simply cleared when full.
 */
export class Authenticator {
  private readonly recent = new Map<string, { hash: string; account: Account }>();

  constructor(
    private readonly registry: AccountRegistry,
    private readonly secrets: Secrets,
    private readonly maxEntries = 10_000,
  ) {}

  authenticate(headers: IncomingHttpHeaders): AuthResult {
    const key = bearerKey(headers);
    if (key === undefined) return { ok: false, error: new GatewayError('missing_key') };
    const hit = this.recent.get(key);
    if (
      hit !== undefined &&
      hit.account.keyHash === hit.hash &&
      this.registry.byKeyHash(hit.hash) === hit.account
    ) {
      return admitted(hit.account);
    }
    const result = authenticate(headers, this.registry, this.secrets);
    if (result.ok) {
      if (this.recent.size >= this.maxEntries) this.recent.clear();
      this.recent.set(key, { hash: result.account.keyHash, account: result.account });
    }
    return result;
  }
}

function admitted(account: Account): AuthResult {
  if (!account.status) return { ok: false, error: new GatewayError('account_disabled') };
  return { ok: true, account };
}

export function authenticate(
  headers: IncomingHttpHeaders,
  registry: AccountRegistry,
  secrets: Secrets,
): AuthResult {
  const key = bearerKey(headers);
  if (key === undefined) return { ok: false, error: new GatewayError('missing_key') };
  if (key.length > 256) return { ok: false, error: new GatewayError('invalid_key') };
  const hash = secrets.hash(key);
  const account = registry.byKeyHash(hash);
  if (account === undefined || !secrets.equal(account.keyHash, hash)) {
    return { ok: false, error: new GatewayError('invalid_key') };
  }
  return admitted(account);
}
