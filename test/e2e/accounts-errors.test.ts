/**
 * Every refusal of the sub-account API over HTTP: validation (400), the $20 API minimum (403),
 * tree permissions (403/404), conflicts (409), the listing fee and paging, methods (405), and that
 * a refused call changes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, removeDir, startGateway, type TestGateway } from '../support/gateway.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';

type Json = Record<string, unknown>;

/** Rounds a float sum back to the 6 decimals the API shows. */
const usd6 = (x: number): number => Number(x.toFixed(6));

let mock: MockUpstream;
let gw: TestGateway;
/** Tree: root → alpha ($1000) → { a-kid ($100) → a-grandkid ($30) }, root → bravo ($100), root → poor ($10). */
const keys: Record<string, string> = {};
const ids: Record<string, number> = {};

async function create(parentKey: string | undefined, name: string, credit: number): Promise<void> {
  const res = await call(gw, '/x-users', {
    ...(parentKey !== undefined && { key: parentKey }),
    body: { Name: name, Email: `${name}@example.com`, CreditGranted: credit },
  });
  const body = (await res.json()) as { User: { SecretKey: string; ID: number } };
  expect(res.status).toBe(200);
  keys[name] = body.User.SecretKey;
  ids[name] = body.User.ID;
}

function key(name: string): string {
  const k = keys[name];
  if (k === undefined) throw new Error(`no key for ${name}`);
  return k;
}

async function expectError(
  res: Promise<Response>,
  status: number,
  code?: string,
  param?: string,
): Promise<Json> {
  const r = await res;
  const body = (await r.json()) as { error: Json };
  expect({ status: r.status, body }).toMatchObject({ status, body: { error: {} } });
  if (code !== undefined) expect(body.error['code']).toBe(code);
  if (param !== undefined) expect(body.error['param']).toBe(param);
  expect(typeof body.error['message']).toBe('string');
  return body.error;
}

async function balanceOf(name: string): Promise<number> {
  const r = await call(gw, `/x-dna/${name}`);
  expect(r.status).toBe(200);
  return ((await r.json()) as [{ Balance: number }])[0].Balance;
}

async function snapshot(): Promise<string> {
  const r = await call(gw, '/x-dna');
  return JSON.stringify(await r.json());
}

beforeAll(async () => {
  mock = await startMockUpstream();
  gw = await startGateway({ OPENAI_API_BASE: mock.url });
  await create(undefined, 'alpha', 1000);
  await create(key('alpha'), 'a-kid', 100);
  await create(key('a-kid'), 'a-grandkid', 30);
  await create(undefined, 'bravo', 100);
  await create(undefined, 'poor', 10);
});

afterAll(async () => {
  await gw.stop();
  removeDir(gw.dataDir);
  await mock.close();
});

describe('POST /x-users validation', () => {
  it('refuses a duplicate Name or Email with 409, case-insensitively', async () => {
    const before = await snapshot();
    await expectError(
      call(gw, '/x-users', { body: { Name: 'ALPHA', Email: 'new@example.com', CreditGranted: 5 } }),
      409,
      'duplicate',
      'Name',
    );
    await expectError(
      call(gw, '/x-users', { body: { Name: 'newname', Email: 'Alpha@Example.com', CreditGranted: 5 } }),
      409,
      'duplicate',
      'Email',
    );
    expect(await snapshot()).toBe(before);
  });

  it('refuses CreditGranted below USER_MIN_BALANCE ($2) with 400', async () => {
    await expectError(
      call(gw, '/x-users', { body: { Name: 'tiny', Email: 'tiny@example.com', CreditGranted: 1.99 } }),
      400,
      'invalid_value',
      'CreditGranted',
    );
  });

  it('refuses wrong types, missing fields, bad names and e-mails with 400 naming the field', async () => {
    const base = { Name: 'valid-name', Email: 'valid@example.com', CreditGranted: 5 };
    const cases: Array<[Json, string]> = [
      [{ ...base, CreditGranted: '5' }, 'CreditGranted'],
      [{ ...base, Name: 1234 }, 'Name'],
      [{ ...base, Email: ['x@example.com'] }, 'Email'],
      [{ ...base, Rates: 'high' }, 'Rates'],
      [{ ...base, Days: 366 }, 'Days'],
      [{ Email: 'valid@example.com', CreditGranted: 5 }, 'Name'],
      [{ Name: 'valid-name', CreditGranted: 5 }, 'Email'],
      [{ Name: 'valid-name', Email: 'valid@example.com' }, 'CreditGranted'],
      [{ ...base, Name: 'abc' }, 'Name'],
      [{ ...base, Name: '12345' }, 'Name'],
      [{ ...base, Name: 'has space' }, 'Name'],
      [{ ...base, Name: 'a'.repeat(64) }, 'Name'],
      [{ ...base, Email: 'not-an-email' }, 'Email'],
      [{ ...base, Name: 'zero\u200bwidth' }, 'Name'],
      [{ ...base, Name: '\u0301accent' }, 'Name'],
      [{ ...base, Name: '测试' }, 'Name'],
      [{ ...base, Name: '名'.repeat(64) }, 'Name'],
    ];
    for (const [body, param] of cases) {
      await expectError(call(gw, '/x-users', { body }), 400, 'invalid_value', param);
    }
    await expectError(call(gw, '/x-users', { body: '{"Name": ' }), 400, 'invalid_json');
    await expectError(call(gw, '/x-users', { body: '[1,2]' }), 400, 'invalid_body');
  });

  it('refuses Rates below the parent with 400', async () => {
    await expectError(
      call(gw, '/x-users', {
        key: key('alpha'),
        body: { Name: 'cheap', Email: 'cheap@example.com', CreditGranted: 5, Rates: 0.5 },
      }),
      400,
      'invalid_value',
      'Rates',
    );
  });

  it('refuses a grant the parent cannot pay with 402 and a full ChildLimit with 409', async () => {
    await expectError(
      call(gw, '/x-users', {
        key: key('bravo'),
        body: { Name: 'pricey', Email: 'pricey@example.com', CreditGranted: 500 },
      }),
      402,
      'insufficient_quota',
    );
    await ok(call(gw, '/x-users/bravo', { method: 'PUT', body: { ChildLimit: 0 } }));
    await expectError(
      call(gw, '/x-users', {
        key: key('bravo'),
        body: { Name: 'one-more', Email: 'one-more@example.com', CreditGranted: 5 },
      }),
      409,
      'conflict',
    );
    await ok(call(gw, '/x-users/bravo', { method: 'PUT', body: { ChildLimit: 10 } }));
  });
});

async function ok(res: Promise<Response>): Promise<Json> {
  const r = await res;
  const body = (await r.json()) as Json;
  expect({ status: r.status, body }).toMatchObject({ status: 200 });
  return body;
}

describe('permissions', () => {
  it('gives 403 on /x-users and /x-dna to a caller whose balance is at most $20', async () => {
    for (const [method, path] of [
      ['GET', '/x-users'],
      ['GET', '/x-dna'],
      ['POST', '/x-users'],
      ['PUT', '/x-users/poor'],
    ] as const) {
      await expectError(
        call(gw, path, {
          method,
          key: key('poor'),
          ...(method !== 'GET' && { body: { Name: 'poorkid', Email: 'p@example.com' } }),
        }),
        403,
        'balance_below_api_minimum',
      );
    }
    // The grandchild holds $30 (> $20), so it may list its (empty) children.
    expect(await ok(call(gw, '/x-users', { key: key('a-grandkid') }))).toEqual([]);
  });

  it('PUT on a non-descendant answers exactly like an unknown account (404); on self only Alias/BillingEmail', async () => {
    const unknown = await call(gw, '/x-users/nobody-here', {
      method: 'PUT',
      key: key('alpha'),
      body: { Alias: 'x' },
    });
    const unknownBody = (await unknown.json()) as { error: { message: string; code: string } };
    expect(unknown.status).toBe(404);
    expect(unknownBody.error.code).toBe('account_not_found');
    // A sibling, the parent of the caller and root exist, but are not the caller's descendants: the
    // answer must not tell them apart from a name that does not exist (no oracle over other tenants).
    for (const [target, caller, body] of [
      ['bravo', 'alpha', { CreditGranted: 5 }],
      ['alpha', 'a-kid', { Alias: 'x' }],
      ['root', 'alpha', { Alias: 'x' }],
      ['bravo@example.com', 'alpha', { Alias: 'x' }],
    ] as const) {
      const r = await call(gw, `/x-users/${target}`, { method: 'PUT', key: key(caller), body });
      const b = (await r.json()) as { error: { message: string; code: string; type: string } };
      expect(r.status).toBe(404);
      expect(b.error.code).toBe('account_not_found');
      expect(b.error.type).toBe('invalid_request_error');
      expect(b.error.message).toBe(unknownBody.error.message.replace('nobody-here', target));
    }
    await expectError(
      call(gw, '/x-users/alpha', { method: 'PUT', key: key('alpha'), body: { CreditGranted: 100 } }),
      403,
      'not_ancestor',
    );
    const self = await ok(
      call(gw, '/x-users/alpha', { method: 'PUT', key: key('alpha'), body: { Alias: 'Alpha Corp' } }),
    );
    expect(self).toMatchObject({ User: { Updates: { Alias: 'Alpha Corp' } } });
  });

  it('PUT reaches any descendant: an ancestor recharges a grandchild and pays for it', async () => {
    const alphaBefore = await balanceOf('alpha');
    const kidBefore = await balanceOf('a-kid');
    const grandBefore = await balanceOf('a-grandkid');
    const r = await ok(
      call(gw, '/x-users/a-grandkid', {
        method: 'PUT',
        key: key('alpha'),
        body: { CreditGranted: 5, Days: 30 },
      }),
    );
    expect(r).toMatchObject({
      Parent: { Name: 'alpha', Balance: usd6(alphaBefore - 5) },
      User: { Name: 'a-grandkid', Updates: { Balance: usd6(grandBefore + 5), CreditGranted: 5 } },
    });
    const cards = (r['User'] as { Updates: { CreditBalance: Array<Record<string, string>> } }).Updates
      .CreditBalance;
    const last = cards[cards.length - 1] ?? {};
    expect(Date.parse(last['expires_at'] ?? '') - Date.parse(last['granted_at'] ?? '')).toBe(30 * 86_400_000);
    expect(await balanceOf('alpha')).toBe(usd6(alphaBefore - 5));
    expect(await balanceOf('a-kid')).toBe(kidBefore);
  });

  it('DELETE of a grandchild is 403, of a child with children 409, of an unknown or foreign account 404', async () => {
    const before = await snapshot();
    await expectError(call(gw, '/x-users/a-grandkid', { method: 'DELETE', key: key('alpha') }), 403);
    await expectError(call(gw, '/x-users/a-kid', { method: 'DELETE', key: key('alpha') }), 409, 'conflict');
    await expectError(
      call(gw, '/x-users/bravo', { method: 'DELETE', key: key('alpha') }),
      404,
      'account_not_found',
    );
    await expectError(call(gw, '/x-users/alpha', { method: 'DELETE', key: key('alpha') }), 403, 'forbidden');
    await expectError(call(gw, '/x-users/999999', { method: 'DELETE' }), 404, 'account_not_found');
    expect(await snapshot()).toBe(before);
  });

  it('GET of an account that is not a direct child (or not a descendant on /x-dna) is 404', async () => {
    await expectError(call(gw, '/x-users/a-grandkid', { key: key('alpha') }), 404, 'account_not_found');
    await expectError(call(gw, '/x-users/bravo', { key: key('alpha') }), 404, 'account_not_found');
    await expectError(call(gw, '/x-dna/bravo', { key: key('alpha') }), 404, 'account_not_found');
    await expectError(call(gw, '/x-users?email=nobody@example.com'), 404, 'account_not_found');
    // A one-element array, as the original answers a single lookup.
    expect(await ok(call(gw, '/x-dna/a-grandkid', { key: key('alpha') }))).toMatchObject([
      { Name: 'a-grandkid' },
    ]);
    expect(await ok(call(gw, `/x-users?id=${ids['a-kid']}`, { key: key('alpha') }))).toMatchObject([
      { Name: 'a-kid' },
    ]);
    expect(await ok(call(gw, '/x-users?email=A-KID@example.com', { key: key('alpha') }))).toMatchObject([
      { Name: 'a-kid' },
    ]);
  });

  it('accepts the bare key form `Authorization: <key>`', async () => {
    const list = (await ok(call(gw, '/x-dna', { key: key('alpha'), raw: true }))) as unknown as Json[];
    expect(list.map((u) => u['Name'])).toEqual(['a-grandkid', 'a-kid']);
    await expectError(call(gw, '/x-dna', { key: 'sk-Xvs' + 'x'.repeat(45), raw: true }), 401);
    await expectError(call(gw, '/x-dna', { key: '' }), 401);
  });
});

describe('listing, paging and methods', () => {
  it('charges a non-root caller $0.002 once per full listing, not for lookups or /x-dna', async () => {
    const start = await balanceOf('alpha');
    await ok(call(gw, '/x-users', { key: key('alpha') }));
    expect(await balanceOf('alpha')).toBe(usd6(start - 0.002));
    await ok(call(gw, '/x-users?page=1&size=1', { key: key('alpha') }));
    expect(await balanceOf('alpha')).toBe(usd6(start - 0.004));
    await ok(call(gw, '/x-users/a-kid', { key: key('alpha') }));
    await ok(call(gw, '/x-users?name=a-kid', { key: key('alpha') }));
    await ok(call(gw, '/x-dna', { key: key('alpha') }));
    expect(await balanceOf('alpha')).toBe(usd6(start - 0.004));
    const fees = await gw.app.store.db
      .selectFrom('ledger')
      .select(['amount'])
      .where('account_id', '=', ids['alpha'] ?? 0)
      .where('kind', '=', 'fee')
      .execute();
    expect(fees.map((f) => Number(f.amount))).toEqual([-2000, -2000]);
  });

  it('pages with page/size (max 1000) and reports the total in headers', async () => {
    const r = await call(gw, '/x-users?page=2&size=2');
    expect(r.status).toBe(200);
    expect(r.headers.get('x-total-count')).toBe('3');
    // Newest first: alpha, bravo, poor were created in that order.
    expect(((await r.json()) as Json[]).map((u) => u['Name'])).toEqual(['alpha']);
    expect(await ok(call(gw, '/x-dna?page=9&size=1000'))).toEqual([]);
    for (const q of ['size=1001', 'size=0', 'page=0', 'page=x', 'size=1.5']) {
      const before = await balanceOf('alpha');
      await expectError(call(gw, `/x-users?${q}`, { key: key('alpha') }), 400, 'invalid_value');
      expect(await balanceOf('alpha')).toBe(before); // refused before the fee
    }
  });

  it('answers unsupported methods with 405', async () => {
    for (const [method, path] of [
      ['PUT', '/x-users'],
      ['DELETE', '/x-users'],
      ['POST', '/x-users/alpha'],
      ['PATCH', '/x-users/alpha'],
      ['POST', '/x-dna'],
      ['DELETE', '/x-dna/alpha'],
    ] as const) {
      const r = await call(gw, path, { method, body: {} });
      expect({ method, path, status: r.status }).toEqual({ method, path, status: 405 });
    }
  });
});

describe('PUT validation is all or nothing', () => {
  it('refuses the whole update when one field is invalid', async () => {
    const before = await snapshot();
    const bad: Array<[Json, number, string]> = [
      [{ CreditGranted: 10, Rates: 0.5 }, 400, 'Rates'],
      [{ CreditGranted: 10, RateLimit: 0 }, 400, 'RateLimit'],
      [{ CreditGranted: 10, AllowIPs: '10.0.0.1 not-an-ip' }, 400, 'AllowIPs'],
      [{ CreditGranted: 10, Email: 'alpha@example.com' }, 409, 'Email'],
      [{ CreditGranted: 10, Name: 'bravo' }, 409, 'Name'],
      [{ CreditGranted: 10, SoftLimit: 5000 }, 400, 'SoftLimit'],
      [{ CreditGranted: 10, Status: 'yes' }, 400, 'Status'],
      [{ Colour: 'blue' }, 400, ''], // unknown fields alone: nothing to change
      [{ Days: 30 }, 400, 'Days'],
      [{ CreditGranted: -1000 }, 400, 'CreditGranted'],
      [{}, 400, ''],
    ];
    for (const [body, status, param] of bad) {
      const err = await expectError(
        call(gw, '/x-users/a-kid', { method: 'PUT', key: key('alpha'), body }),
        status,
      );
      if (param !== '') expect({ body, param: err['param'] }).toEqual({ body, param });
    }
    expect(await snapshot()).toBe(before);
  });

  it('refuses RateLimit above the caller’s own and a recharge the caller cannot pay (402)', async () => {
    await ok(call(gw, '/x-users/alpha', { method: 'PUT', body: { RateLimit: 100 } }));
    await expectError(
      call(gw, '/x-users/a-kid', { method: 'PUT', key: key('alpha'), body: { RateLimit: 101 } }),
      400,
      'invalid_value',
      'RateLimit',
    );
    expect(
      await ok(call(gw, '/x-users/a-kid', { method: 'PUT', key: key('alpha'), body: { RateLimit: 50 } })),
    ).toMatchObject({ User: { Updates: { RateLimit: 50 } } });
    await expectError(
      call(gw, '/x-users/a-kid', { method: 'PUT', key: key('alpha'), body: { CreditGranted: 100000 } }),
      402,
      'insufficient_quota',
    );
  });
});
