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
  if (!account.status) return { ok: false, error: new GatewayError('account_disabled') };
  return { ok: true, account };
}
