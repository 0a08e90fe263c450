import { describe, expect, it } from 'vitest';
import { AccountRegistry } from '../../src/accounts/account-registry.js';
import { Authenticator, bearerKey } from '../../src/accounts/authenticate.js';
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
  return { registry, account, auth: new Authenticator(registry, secrets, 2) };
}
const h = (v: string) => ({ authorization: v });

describe('Authenticator', () => {
  it('accepts Bearer and bare keys, refuses missing and unknown ones', () => {
    const { auth } = setup();
    expect(auth.authenticate(h(`Bearer ${KEY}`)).ok).toBe(true);
    expect(auth.authenticate(h(KEY)).ok).toBe(true);
    expect(auth.authenticate({})).toMatchObject({
      ok: false,
      error: { code: 'invalid_api_key', status: 401 },
    });
    expect(auth.authenticate(h(`Bearer ${OTHER}`))).toMatchObject({ ok: false });
    expect(bearerKey(h('bearer   x '))).toBe('x');
  });

  it('stops accepting a remembered key once its account is deleted, disabled or re-keyed', () => {
    const { auth, registry, account } = setup();
    expect(auth.authenticate(h(KEY)).ok).toBe(true);
    account.status = false;
    expect(auth.authenticate(h(KEY))).toMatchObject({ ok: false, error: { code: 'account_deactivated' } });
    account.status = true;
    const old = { name: account.name, email: account.email, keyHash: account.keyHash };
    account.keyHash = secrets.hash(OTHER);
    registry.reindex(account, old);
    expect(auth.authenticate(h(KEY)).ok).toBe(false);
    expect(auth.authenticate(h(OTHER)).ok).toBe(true);
    registry.remove(account);
    expect(auth.authenticate(h(OTHER)).ok).toBe(false);
  });
});
