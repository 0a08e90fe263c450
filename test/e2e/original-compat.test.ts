/**
 * Drop-in for the original's users (issue 13): every test sends exactly what the original's docs
 * (`curl -d` without a Content-Type, so curl's `application/x-www-form-urlencoded`) or its pages
 * (`fetch` with the bare key in `Authorization` and a JSON body, the path built without encoding)
 * send, and reads the answer the way they do.
 *
 * 1. Names in any script: created, looked up, recharged, viewed and deleted by Name; unique in
 *    any case or normal form, also after a restart (the registry is rebuilt from the store).
 * 2. Single lookups answer a one-element array; listings come newest first.
 * 3. The root key on the original's balance page: numbers it can `.toFixed`, plus `unlimited`.
 * 4. An INIT_USERS key with `_` starts the gateway and authenticates everywhere.
 * 5. Lowering HardLimit alone lowers SoftLimit with it, and says so.
 * 6. Times with the offset of TZ (`+08:00` in Asia/Shanghai, `Z` in UTC).
 * 7. DELETE shows the child's cards; `AllowIP`/`DenyIP`/`RPM` are read; unknown fields are ignored
 *    with a warning.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { call, removeDir, startGateway, type TestGateway } from '../support/gateway.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';

type Json = Record<string, unknown>;
interface Card {
  amount: number;
  balance: number;
  granted_at: string;
  expires_at: string;
}

const UPSTREAM_KEY = 'sk-upstream-original-compat-0001';
/** A root key as the original accepted it: `sk-Xvs` + 45 word characters, `_` included. */
const ROOT = 'sk-Xvs' + 'Ab_3'.repeat(11) + '_';
/** ISO-8601 to the millisecond with the +08:00 offset of Asia/Shanghai. */
const SHANGHAI_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+08:00$/;

let mock: MockUpstream;
let gw: TestGateway;

beforeAll(async () => {
  expect(ROOT).toHaveLength(51);
  mock = await startMockUpstream();
  gw = await startGateway({
    OPENAI_API_BASE: mock.url,
    INIT_KEYS: UPSTREAM_KEY,
    INIT_USERS: `root:root@example.com:${ROOT}`,
    TZ: 'Asia/Shanghai',
  });
});

afterAll(async () => {
  await gw.stop();
  removeDir(gw.dataDir);
  await mock.close();
});

/**
 * What the original sub-account page sends: the bare key in `Authorization`, JSON with
 * `Content-Type: application/json`, and the Name pasted into the path as typed (fetch encodes it).
 */
async function page(
  method: string,
  path: string,
  key: string,
  body?: Json,
): Promise<{ status: number; json: unknown; headers: Headers }> {
  const r = await fetch(gw.url + path, {
    method,
    headers: { 'Content-Type': 'application/json', Authorization: key },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  return { status: r.status, json: await r.json(), headers: r.headers };
}

/** What the docs' `curl -X <method> -H "Authorization: Bearer $key" -d '<json>' <url>` sends. */
async function curl(
  method: string,
  path: string,
  key: string,
  body?: string,
): Promise<{ status: number; json: unknown; headers: Headers }> {
  const r = await fetch(gw.url + path, {
    method,
    headers: {
      Authorization: `Bearer ${key}`,
      ...(body !== undefined && { 'Content-Type': 'application/x-www-form-urlencoded' }),
    },
    ...(body !== undefined && { body }),
  });
  return { status: r.status, json: await r.json(), headers: r.headers };
}

function ok<T = Json>(r: { status: number; json: unknown }): T {
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json as T;
}

function errorCode(r: { status: number; json: unknown }): string {
  return ((r.json as { error?: { code?: string } }).error?.code ?? '') as string;
}

function user(body: Json): Json & { Updates: Json; SecretKey?: string } {
  return body['User'] as Json & { Updates: Json; SecretKey?: string };
}

/** Creates a child of root the way the original page does; returns its key. */
async function pageCreate(name: string, email: string, credit: number): Promise<string> {
  const created = ok(
    await page('POST', '/x-users', ROOT, { Name: name, Email: email, CreditGranted: credit }),
  );
  expect(user(created)['Name']).toBe(name);
  return user(created).SecretKey ?? '';
}

describe('1. names in any script', () => {
  it('creates, finds, recharges, views and deletes 测试账号 through the original page’s requests', async () => {
    const key = await pageCreate('测试账号', 'ceshi@example.com', 25);
    expect(key).toMatch(/^sk-Xvs[A-Za-z0-9]{45}$/);
    // The new key works and its balance page shows the name.
    const info = ok(await curl('GET', '/dashboard/x_user/info', key));
    expect(info).toMatchObject({ name: '测试账号', alias: '测试账号', balance: 25 });
    // "Recharge": PUT /x-users/{name} {CreditGranted, Email?}.
    const recharged = ok(
      await page('PUT', '/x-users/测试账号', ROOT, { CreditGranted: 10, Email: 'ceshi@example.com' }),
    );
    expect(user(recharged).Updates).toMatchObject({ Name: '测试账号', Balance: 35 });
    // "View": GET /x-dna/{name}, shown as JSON.
    const viewed = ok<Json[]>(await page('GET', '/x-dna/测试账号', ROOT));
    expect(viewed).toMatchObject([{ Name: '测试账号', Email: 'ceshi@example.com', Balance: 35 }]);
    // Percent-encoded, in the query, and by e-mail: the same account.
    expect(
      ok<Json[]>(await curl('GET', `/x-users/${encodeURIComponent('测试账号')}`, ROOT))[0],
    ).toMatchObject({
      Name: '测试账号',
    });
    expect(
      ok<Json[]>(await curl('GET', `/x-users?name=${encodeURIComponent('测试账号')}`, ROOT)),
    ).toHaveLength(1);
    // "Delete": DELETE /x-users/{name}.
    const deleted = ok(await page('DELETE', '/x-users/测试账号', ROOT));
    expect(user(deleted)).toMatchObject({ Name: '测试账号' });
    expect((await page('GET', '/x-dna/测试账号', ROOT)).status).toBe(404);
  });

  it('accepts 张伟k2x9 and José; refuses what only looks different (case, NFD, final sigma, width)', async () => {
    await pageCreate('张伟k2x9', 'zhangwei@example.com', 5);
    await pageCreate('José', 'jose@example.com', 5);
    await pageCreate('ΟΔΟΣ', 'odos@example.com', 5);
    for (const [name, email] of [
      ['JOSÉ', 'jose2@example.com'],
      ['Jose\u0301', 'jose3@example.com'], // the same name in NFD
      ['οδοσ', 'odos2@example.com'], // lowered letter by letter: no final sigma
      ['张伟Ｋ２ｘ９', 'zhangwei2@example.com'], // full-width letters and digits
      ['fresh-name', 'JOSE@EXAMPLE.COM'],
    ] as const) {
      const r = await page('POST', '/x-users', ROOT, { Name: name, Email: email, CreditGranted: 5 });
      expect({ name, status: r.status, code: errorCode(r) }).toEqual({
        name,
        status: 409,
        code: 'duplicate',
      });
    }
    // Stored as NFC: the NFD spelling finds it and shows the stored form.
    expect(ok<Json[]>(await curl('GET', `/x-dna/${encodeURIComponent('jose\u0301')}`, ROOT))).toMatchObject([
      { Name: 'José' },
    ]);
    // A rename to another spelling of a taken name is refused too.
    const rename = await curl('PUT', '/x-users/jose@example.com', ROOT, '{"Name": "οδος"}');
    expect(rename.status).toBe(409);
    // Invisible characters and names without a letter stay refused (400, naming Name).
    for (const name of ['zero\u200bwidth', '1234', '测试']) {
      const r = await page('POST', '/x-users', ROOT, {
        Name: name,
        Email: 'x@example.com',
        CreditGranted: 5,
      });
      expect({ name, status: r.status }).toEqual({ name, status: 400 });
    }
  });

  it('keeps names and their uniqueness across a restart (rebuilt from the store)', async () => {
    gw = await gw.restart();
    expect(ok<Json[]>(await page('GET', '/x-dna/张伟k2x9', ROOT))).toMatchObject([{ Name: '张伟k2x9' }]);
    expect(ok<Json[]>(await page('GET', '/x-dna/ΟΔΟΣ', ROOT))).toMatchObject([{ Name: 'ΟΔΟΣ' }]);
    const r = await page('POST', '/x-users', ROOT, {
      Name: 'josé',
      Email: 'jose4@example.com',
      CreditGranted: 5,
    });
    expect(r.status).toBe(409);
  });
});

describe('2. single lookups as the original answers them', () => {
  let id = 0;

  beforeAll(async () => {
    await curl(
      'POST',
      '/x-users',
      ROOT,
      '{"Name": "child-1", "Email": "child-1@proxyxai.com", "CreditGranted": 100}',
    );
    await curl(
      'POST',
      '/x-users',
      ROOT,
      '{"Name": "child-2", "Email": "child-2@proxyxai.com", "CreditGranted": 100}',
    );
    id = (ok<Json[]>(await curl('GET', '/x-users/child-1', ROOT))[0] as Json)['ID'] as number;
  });

  it('answers each documented lookup of /x-users and /x-dna with a one-element array (resp[0])', async () => {
    for (const base of ['/x-users', '/x-dna']) {
      for (const path of [
        `${base}/${id}`,
        `${base}/child-1`,
        `${base}/child-1@proxyxai.com`,
        `${base}?id=${id}`,
        `${base}?name=child-1`,
        `${base}?email=child-1@proxyxai.com`,
      ]) {
        const resp = ok<Json[]>(await curl('GET', path, ROOT));
        expect({ path, isArray: Array.isArray(resp), length: resp.length }).toEqual({
          path,
          isArray: true,
          length: 1,
        });
        expect(resp[0]).toMatchObject({
          ID: id,
          Name: 'child-1',
          SecretKey: '***',
          HardLimit: 100,
          SoftLimit: 80,
        });
      }
    }
  });

  it('lists newest first, as the docs’ example (child-2 before child-1)', async () => {
    const all = ok<Json[]>(await curl('GET', '/x-users', ROOT)).map((u) => u['Name']);
    expect(all.indexOf('child-2')).toBeLessThan(all.indexOf('child-1'));
    const ids = ok<Json[]>(await curl('GET', '/x-dna', ROOT)).map((u) => u['ID'] as number);
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
    const firstPage = ok<Json[]>(await curl('GET', '/x-users?page=1&size=1', ROOT));
    expect(firstPage[0]?.['ID']).toBe(Math.max(...ids));
  });
});

describe('3. the root key on the original balance page', () => {
  it('answers numbers for every value the page formats with .toFixed, and unlimited: true', async () => {
    // The balance page sends `Authorization: Bearer <key>` and `Content-Type: application/json`.
    const r = await fetch(`${gw.url}/dashboard/x_user/info`, {
      headers: { Authorization: `Bearer ${ROOT}`, 'Content-Type': 'application/json' },
    });
    expect(r.ok).toBe(true);
    const u = (await r.json()) as {
      credit_used: number;
      balance: number;
      hard_limit: number;
      soft_limit: number;
      unlimited: boolean;
      create_at: string;
      credit_balance: Card[];
      daily_usage: { CreditUsed: number; Requests: number };
      monthly_usage: { CreditUsed: number; Requests: number };
      rate_limit: number;
    };
    expect(u.unlimited).toBe(true);
    // What the page computes, cell by cell: none of it may throw.
    const cells = [
      `$${u.credit_used.toFixed(2)}`,
      `$${u.balance.toFixed(2)}`,
      `$${u.daily_usage.CreditUsed.toFixed(2)}`,
      `$${u.monthly_usage.CreditUsed.toFixed(2)}`,
      `$${u.hard_limit.toFixed(2)}`,
      ...u.credit_balance.map((c) => `$${c.amount.toFixed(2)} $${c.balance.toFixed(2)}`),
      new Date(u.create_at).toLocaleString(),
    ];
    expect(cells[1]).toBe('$1000000000.00');
    expect(cells[4]).toBe('$1000000000.00');
    expect(u.soft_limit).toBe(1e9);
    expect(Number.isNaN(new Date(u.create_at).getTime())).toBe(false);
    expect(typeof u.rate_limit).toBe('number');
  });
});

describe('4. INIT_USERS keys with "_"', () => {
  it('accepts the original’s key format for configured keys and refuses other characters', () => {
    expect(loadConfig({ INIT_USERS: `root:root@example.com:${ROOT}` }).initUsers?.key).toBe(ROOT);
    expect(() => loadConfig({ INIT_USERS: `root:root@example.com:${ROOT.slice(0, -1)}-` })).toThrow(
      /INIT_USERS key/,
    );
    expect(() => loadConfig({ INIT_USERS: `root:root@example.com:${ROOT}_` })).toThrow(/INIT_USERS key/);
  });

  it('authenticates such a root key on /x-users, /dashboard and /v1, Bearer and bare', async () => {
    expect((await page('GET', '/x-users', ROOT)).status).toBe(200);
    expect((await curl('GET', '/x-dna', ROOT)).status).toBe(200);
    expect((await curl('GET', '/dashboard/x_user/info', ROOT)).status).toBe(200);
    const completion = await gw.client(ROOT).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hello' }],
    });
    expect(completion.choices.length).toBeGreaterThan(0);
    // A key that differs only after the "_" is another key.
    expect((await curl('GET', '/x-dna', ROOT.slice(0, -1) + 'x')).status).toBe(401);
  });
});

describe('5. lowering HardLimit alone', () => {
  it('PUT {"HardLimit": 50} on a default 100/80 account lowers SoftLimit to 40 and says so', async () => {
    await curl(
      'POST',
      '/x-users',
      ROOT,
      '{"Name": "limited", "Email": "limited@example.com", "CreditGranted": 100}',
    );
    const r = await curl('PUT', '/x-users/limited', ROOT, '{"HardLimit": 50}');
    const body = ok(r);
    expect(user(body).Updates).toMatchObject({ HardLimit: 50, SoftLimit: 40 });
    expect(body['Warnings']).toEqual([expect.stringContaining('SoftLimit lowered from $80 to $40')]);
    expect(r.headers.get('x-proxyxai-warning')).toContain('SoftLimit lowered from $80 to $40');
    // A HardLimit that stays above the SoftLimit leaves it alone, without a warning.
    const raised = await curl('PUT', '/x-users/limited', ROOT, '{"HardLimit": 60}');
    expect(user(ok(raised)).Updates).toMatchObject({ HardLimit: 60, SoftLimit: 40 });
    expect(ok(raised)['Warnings']).toBeUndefined();
    expect(raised.headers.get('x-proxyxai-warning')).toBeNull();
    // Both given: the explicit SoftLimit must still fit.
    expect((await curl('PUT', '/x-users/limited', ROOT, '{"HardLimit": 30, "SoftLimit": 35}')).status).toBe(
      400,
    );
  });
});

describe('6. times in TZ', () => {
  it('writes every time of the account API and the balance page with +08:00 (Asia/Shanghai)', async () => {
    const before = Date.now();
    const created = ok(
      await curl(
        'POST',
        '/x-users',
        ROOT,
        '{"Name": "timed", "Email": "timed@example.com", "CreditGranted": 30}',
      ),
    );
    const key = user(created).SecretKey ?? '';
    const times: string[] = [];
    const cards = (list: unknown): void => {
      for (const c of list as Card[]) times.push(c.granted_at, c.expires_at);
    };
    cards(user(created).Updates['CreditBalance']);
    const [listed] = ok<Json[]>(await curl('GET', '/x-dna/timed', ROOT));
    times.push(listed?.['CreatedAt'] as string, listed?.['UpdatedAt'] as string);
    cards(listed?.['CreditBalance']);
    cards(
      user(ok(await curl('PUT', '/x-users/timed', ROOT, '{"CreditGranted": 5}'))).Updates['CreditBalance'],
    );
    const info = ok(await curl('GET', '/dashboard/x_user/info', key));
    times.push(info['create_at'] as string);
    // The upstream keys of /x-keys too.
    const keys = ok<Json[]>(await curl('GET', '/x-keys', ROOT));
    expect(keys.length).toBeGreaterThan(0);
    for (const k of keys) times.push(k['CreatedAt'] as string);
    cards(info['credit_balance']);
    expect(times.length).toBeGreaterThanOrEqual(10);
    for (const t of times) {
      expect(t).toMatch(SHANGHAI_TIME);
      // The same instant: the wall clock is UTC + 8 hours.
      const at = Date.parse(t);
      expect(t.slice(0, 19)).toBe(new Date(at + 8 * 3_600_000).toISOString().slice(0, 19));
    }
    expect(Date.parse(listed?.['CreatedAt'] as string)).toBeGreaterThanOrEqual(before - 1000);
    expect(Date.parse(listed?.['CreatedAt'] as string)).toBeLessThanOrEqual(Date.now());
  });

  it('keeps Z in UTC', async () => {
    const utc = await startGateway({ OPENAI_API_BASE: mock.url, TZ: 'UTC' });
    try {
      const r = await call(utc, '/x-users', {
        body: { Name: 'utc-kid', Email: 'utc-kid@example.com', CreditGranted: 5 },
      });
      expect(r.status).toBe(200);
      const [kid] = (await (await call(utc, '/x-users/utc-kid')).json()) as [Json];
      expect(kid['CreatedAt']).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    } finally {
      await utc.stop();
      removeDir(utc.dataDir);
    }
  });
});

describe('7. the smaller differences', () => {
  it('DELETE answers the child’s cards at its deletion in User.CreditBalance', async () => {
    await curl(
      'POST',
      '/x-users',
      ROOT,
      '{"Name": "leaving", "Email": "leaving@example.com", "CreditGranted": 100}',
    );
    await curl('PUT', '/x-users/leaving', ROOT, '{"CreditGranted": 80}');
    const [before] = ok<Json[]>(await curl('GET', '/x-users/leaving', ROOT));
    const deleted = ok(await curl('DELETE', '/x-users/leaving', ROOT));
    const shown = user(deleted)['CreditBalance'] as Card[];
    expect(shown.map((c) => [c.amount, c.balance])).toEqual([
      [100, 100],
      [80, 80],
    ]);
    expect(shown).toEqual(before?.['CreditBalance']);
  });

  it('reads the older AllowIP / DenyIP and the successor’s RPM', async () => {
    await curl(
      'POST',
      '/x-users',
      ROOT,
      '{"Name": "legacy", "Email": "legacy@example.com", "CreditGranted": 30}',
    );
    const allowed = ok(await curl('PUT', '/x-users/legacy', ROOT, '{"AllowIP": "49.234.158.212"}'));
    expect(user(allowed).Updates['AllowIPs']).toEqual(['49.234.158.212']);
    expect(allowed['Warnings']).toBeUndefined();
    const both = ok(
      await curl('PUT', '/x-users/legacy', ROOT, '{"AllowIP": "118.23.21.0/24", "AllowIPs": "119.24.12.11"}'),
    );
    expect(user(both).Updates['AllowIPs']).toEqual(['49.234.158.212', '119.24.12.11', '118.23.21.0/24']);
    const denied = ok(await curl('PUT', '/x-users/legacy', ROOT, '{"DenyIP": "49.234.158.212"}'));
    expect(user(denied).Updates['AllowIPs']).toEqual(['119.24.12.11', '118.23.21.0/24']);
    expect(user(ok(await curl('PUT', '/x-users/legacy', ROOT, '{"RPM": 5}'))).Updates).toMatchObject({
      RateLimit: 5,
    });
    expect((await curl('PUT', '/x-users/legacy', ROOT, '{"RPM": 5, "RateLimit": 6}')).status).toBe(400);
  });

  it('ignores unknown fields with a warning (body and x-proxyxai-warning), but not a body of nothing else', async () => {
    const created = await curl(
      'POST',
      '/x-users',
      ROOT,
      '{"Name": "lenient", "Email": "lenient@example.com", "CreditGranted": 30, "Level": 3, "名字": 1}',
    );
    const body = ok(created);
    expect(user(body).Updates).toMatchObject({ Level: 0 });
    expect(body['Warnings']).toEqual([expect.stringContaining('Ignored unknown field(s) "Level", "名字"')]);
    const header = created.headers.get('x-proxyxai-warning') ?? '';
    expect(header).toContain('"Level", "\\u540d\\u5b57"');
    const recharge = await curl('PUT', '/x-users/lenient', ROOT, '{"CreditGranted": 10, "Colour": "blue"}');
    expect(user(ok(recharge)).Updates).toMatchObject({ Balance: 40 });
    expect(recharge.headers.get('x-proxyxai-warning')).toContain('"Colour"');
    const typo = await curl('PUT', '/x-users/lenient', ROOT, '{"Rate": 2}');
    expect(typo.status).toBe(400);
    expect((typo.json as { error: { message: string } }).error.message).toContain('"Rate"');
  });
});
