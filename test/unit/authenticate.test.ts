import { describe, expect, it } from 'vitest';
import { AccountRegistry } from '../../src/accounts/account-registry.js';
import { Authenticator, bearerKey, type AuthResult } from '../../src/accounts/authenticate.js';
import { newRootAccount } from '../../src/accounts/load-accounts.js';
import { createSecrets } from '../../src/keys/secrets.js';

const secrets = createSecrets(Buffer.alloc(32, 7));
const KEY = 'sk-Xvs' + 'a'.repeat(45);
const OTHER = 'sk-Xvs' + 'b'.repeat(45);

function setup() {
  const registry = new AccountRegistry();
  const account = newRootAccount(1, 'r@example.com', secrets.hash(KEY), KEY.slice(-20), 0, {
    day: 'd',
    month: 'm',
  });
  registry.add(account);
  // No store behind: a key not in memory is unknown (the loader's store lookups are tested in
  // account-cache.test.ts).
  const none = { byKeyHash: () => Promise.resolve(undefined) };
  return { registry, account, auth: new Authenticator(registry, none, secrets, 2) };
}
const h = (v: string) => ({ authorization: v });
/** The answer, which must be synchronous (the account is in memory, or the key is malformed). */
function now(r: AuthResult | Promise<AuthResult>): AuthResult {
  if (r instanceof Promise) throw new Error('expected a synchronous answer');
  return r;
}

describe('Authenticator', () => {
  it('accepts Bearer and bare keys, refuses missing and unknown ones', async () => {
    const { auth } = setup();
    expect(now(auth.authenticate(h(`Bearer ${KEY}`))).ok).toBe(true);
    expect(now(auth.authenticate(h(KEY))).ok).toBe(true);
    expect(now(auth.authenticate({}))).toMatchObject({
      ok: false,
      error: { code: 'invalid_api_key', status: 401 },
    });
    expect(await auth.authenticate(h(`Bearer ${OTHER}`))).toMatchObject({ ok: false });
    expect(bearerKey(h('bearer   x '))).toBe('x');
  });

  it('stops accepting a remembered key once its account is deleted, disabled or re-keyed', async () => {
    const { auth, registry, account } = setup();
    expect(now(auth.authenticate(h(KEY))).ok).toBe(true);
    account.status = false;
    expect(now(auth.authenticate(h(KEY)))).toMatchObject({
      ok: false,
      error: { code: 'account_deactivated' },
    });
    account.status = true;
    const old = { name: account.name, email: account.email, keyHash: account.keyHash };
    account.keyHash = secrets.hash(OTHER);
    registry.reindex(account, old);
    expect((await auth.authenticate(h(KEY))).ok).toBe(false);
    expect(now(auth.authenticate(h(OTHER))).ok).toBe(true);
    registry.remove(account);
    expect((await auth.authenticate(h(OTHER))).ok).toBe(false);
  });
});
