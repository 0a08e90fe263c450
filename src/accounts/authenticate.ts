/**
 * Authentication of account keys from the Authorization header, in `Bearer <key>` or bare `<key>`
 * form (the original's pages send the bare key). Keys are looked up by their HMAC fingerprint, in
 * memory for accounts in use; the fingerprint comparison is constant-time.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';
import type { Secrets } from '../keys/secrets.js';
import type { Account } from './account.js';
import type { AccountLoader } from './account-loader.js';
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
 *
 * The answer is synchronous whenever the account is in memory (every request of an active
 * account); a key not in memory is looked up in the store (account-loader.ts), once: a wrong key
 * is remembered as unknown.
 */
export class Authenticator {
  private readonly recent = new Map<string, { hash: string; account: Account }>();

  constructor(
    private readonly registry: AccountRegistry,
    private readonly accounts: Pick<AccountLoader, 'byKeyHash'>,
    private readonly secrets: Secrets,
    private readonly maxEntries = 10_000,
  ) {}

  authenticate(headers: IncomingHttpHeaders): AuthResult | Promise<AuthResult> {
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
    if (key.length > 256) return { ok: false, error: new GatewayError('invalid_key') };
    const hash = this.secrets.hash(key);
    const loaded = this.registry.byKeyHash(hash);
    if (loaded !== undefined) return this.found(key, hash, loaded);
    if (this.registry.isUnknownKey(hash)) return { ok: false, error: new GatewayError('invalid_key') };
    return this.accounts.byKeyHash(hash).then(
      (a) => this.found(key, hash, a),
      // The store cannot be read: the key may be right, so not a 401.
      (): AuthResult => ({ ok: false, error: new GatewayError('store_unavailable') }),
    );
  }

  private found(key: string, hash: string, account: Account | undefined): AuthResult {
    if (account === undefined || !this.secrets.equal(account.keyHash, hash)) {
      return { ok: false, error: new GatewayError('invalid_key') };
    }
    if (this.recent.size >= this.maxEntries) this.recent.clear();
    this.recent.set(key, { hash, account });
    return admitted(account);
  }
}

function admitted(account: Account): AuthResult {
  if (!account.status) return { ok: false, error: new GatewayError('account_disabled') };
  return { ok: true, account };
}
