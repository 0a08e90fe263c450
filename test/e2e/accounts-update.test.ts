/**
 * PUT /x-users beyond money: renames, ACLs (and their effect on proxied calls), Status, limits,
 * BillingEmail, inherited model restrictions — and concurrent recharges that can never overspend.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, removeDir, startGateway, type TestGateway } from '../support/gateway.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';

type Json = Record<string, unknown>;

let mock: MockUpstream;
let gw: TestGateway;
const keys: Record<string, string> = {};

async function ok(res: Promise<Response>): Promise<Json> {
  const r = await res;
  const body = (await r.json()) as Json;
  expect({ status: r.status, body }).toMatchObject({ status: 200 });
  return body;
}

async function status(res: Promise<Response>): Promise<number> {
  const r = await res;
  await r.arrayBuffer();
  return r.status;
}

async function create(parentKey: string | undefined, name: string, credit: number): Promise<string> {
  const body = await ok(
    call(gw, '/x-users', {
      ...(parentKey !== undefined && { key: parentKey }),
      body: { Name: name, Email: `${name}@example.com`, CreditGranted: credit },
    }),
  );
  const key = (body['User'] as { SecretKey: string }).SecretKey;
  keys[name] = key;
  return key;
}

function put(name: string, body: Json, key?: string): Promise<Response> {
  return call(gw, `/x-users/${name}`, { method: 'PUT', body, ...(key !== undefined && { key }) });
}

async function updates(name: string, body: Json, key?: string): Promise<Json> {
  const r = await ok(put(name, body, key));
  return (r['User'] as { Updates: Json }).Updates;
}

async function get(name: string): Promise<Json> {
  const [one] = (await ok(call(gw, `/x-dna/${name}`))) as unknown as [Json];
  return one;
}

async function chat(key: string, model: string): Promise<number> {
  return status(
    call(gw, '/v1/chat/completions', {
      key,
      body: { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 16 },
    }),
  );
}

beforeAll(async () => {
  mock = await startMockUpstream();
  gw = await startGateway({ OPENAI_API_BASE: mock.url, INIT_KEYS: 'sk-upstream-accounts-1' });
});

afterAll(async () => {
  await gw.stop();
  removeDir(gw.dataDir);
  await mock.close();
});

describe('PUT /x-users: identity fields', () => {
  it('renames Name and Email; the key keeps working and the old identifiers are free', async () => {
    const key = await create(undefined, 'renamer', 50);
    const u = await updates('renamer', {
      Name: 'renamed.one',
      Email: 'Renamed@Example.com',
      Alias: 'Renamed',
    });
    expect(u).toMatchObject({ Name: 'renamed.one', Email: 'Renamed@Example.com', Alias: 'Renamed' });
    expect(await status(call(gw, '/x-dna/renamer'))).toBe(404);
    expect(await get('renamed@example.com')).toMatchObject({ Name: 'renamed.one', Alias: 'Renamed' });
    expect(await ok(call(gw, '/x-users', { key }))).toEqual([]);
    // Changing only the case of one's own name is not a duplicate; the old name can be reused.
    expect(await updates('renamed.one', { Name: 'Renamed.One' })).toMatchObject({ Name: 'Renamed.One' });
    await create(undefined, 'renamer', 5);
    expect(await status(put('renamer', { Name: 'renamed.one' }))).toBe(409);
  });

  it('sets and clears BillingEmail; an account may change its own Alias and BillingEmail', async () => {
    const key = await create(undefined, 'billing', 50);
    expect(await updates('billing', { BillingEmail: 'accounts@example.com' })).toMatchObject({
      BillingEmail: 'accounts@example.com',
    });
    expect(await updates('billing', { BillingEmail: '', Alias: 'Self' }, key)).toMatchObject({
      BillingEmail: null,
      Alias: 'Self',
    });
    expect(await status(put('billing', { BillingEmail: 'nope' }))).toBe(400);
  });

  it('Status false disables the key; true enables it again', async () => {
    const key = await create(undefined, 'switch', 50);
    expect(await updates('switch', { Status: false })).toMatchObject({ Status: false });
    expect(await status(call(gw, '/x-users', { key }))).toBe(401);
    expect(await chat(key, 'gpt-4o-mini')).toBe(401);
    expect(await updates('switch', { Status: true })).toMatchObject({ Status: true });
    expect(await chat(key, 'gpt-4o-mini')).toBe(200);
  });

  it('writes HardLimit and SoftLimit (SoftLimit ≤ HardLimit)', async () => {
    await create(undefined, 'limits', 50);
    expect(await updates('limits', { HardLimit: 30, SoftLimit: 10 })).toMatchObject({
      HardLimit: 30,
      SoftLimit: 10,
    });
    // HardLimit alone below the SoftLimit takes the SoftLimit down to 80 % of it (and says so).
    const lowered = await ok(put('limits', { HardLimit: 5 }));
    expect((lowered['User'] as { Updates: Json }).Updates).toMatchObject({ HardLimit: 5, SoftLimit: 4 });
    expect(lowered['Warnings']).toEqual([expect.stringContaining('SoftLimit lowered from $10 to $4')]);
    expect(await status(put('limits', { HardLimit: 5, SoftLimit: 6 }))).toBe(400);
    expect(await status(put('limits', { SoftLimit: -1 }))).toBe(400);
    // A recharge above the cap raises it to the next $100 multiple; an explicit value wins.
    expect(await updates('limits', { CreditGranted: 100 })).toMatchObject({ Balance: 150, HardLimit: 200 });
    expect(await updates('limits', { CreditGranted: 100, HardLimit: 50 })).toMatchObject({ HardLimit: 50 });
  });
});

describe('PUT /x-users: access lists', () => {
  it('adds and removes IPs; "*" resets (AllowIPs) or leaves only 127.0.0.1 (DenyIPs)', async () => {
    const key = await create(undefined, 'ipacl', 50);
    expect(await status(put('ipacl', { DenyIPs: '10.0.0.1' }))).toBe(400); // nothing to remove from
    expect(await updates('ipacl', { AllowIPs: '10.0.0.1 192.168.0.0/16' })).toMatchObject({
      AllowIPs: ['10.0.0.1', '192.168.0.0/16'],
    });
    expect(await chat(key, 'gpt-4o-mini')).toBe(403); // the test client is 127.0.0.1
    expect(await updates('ipacl', { AllowIPs: ['127.0.0.1'], DenyIPs: ['10.0.0.1'] })).toMatchObject({
      AllowIPs: ['192.168.0.0/16', '127.0.0.1'],
    });
    expect(await chat(key, 'gpt-4o-mini')).toBe(200);
    expect(await updates('ipacl', { DenyIPs: '*' })).toMatchObject({ AllowIPs: ['127.0.0.1'] });
    expect(await updates('ipacl', { AllowIPs: '*' })).toMatchObject({ AllowIPs: ['*'] });
    expect(await get('ipacl')).toMatchObject({ AllowIPs: ['*'] });
    expect(await status(put('ipacl', { AllowIPs: '* 10.0.0.1' }))).toBe(400);
    expect(await status(put('ipacl', { AllowIPs: '10.0.0.0/33' }))).toBe(400);
  });

  it('adds and removes models; "*" on DenyModels forbids every model', async () => {
    const key = await create(undefined, 'modelacl', 50);
    expect(await updates('modelacl', { AllowModels: 'gpt-4o-mini gpt-4o' })).toMatchObject({
      AllowModels: ['gpt-4o-mini', 'gpt-4o'],
    });
    expect(await updates('modelacl', { DenyModels: 'gpt-4o' })).toMatchObject({
      AllowModels: ['gpt-4o-mini'],
    });
    expect(await chat(key, 'gpt-4o')).toBe(403);
    expect(await chat(key, 'gpt-4o-mini')).toBe(200);
    expect(await updates('modelacl', { DenyModels: '*' })).toMatchObject({ AllowModels: [] });
    expect(await chat(key, 'gpt-4o-mini')).toBe(403);
    expect(await updates('modelacl', { AllowModels: '*' })).toMatchObject({ AllowModels: ['*'] });
    expect(await chat(key, 'gpt-4o')).toBe(200);
  });

  it('a model-restricted account passes its restriction on and cannot widen it', async () => {
    const resellerKey = await create(undefined, 'reseller', 500);
    await updates('reseller', { AllowModels: 'gpt-4o-mini' });
    await create(resellerKey, 'resold', 50);
    expect(await get('resold')).toMatchObject({ AllowModels: ['gpt-4o-mini'] });
    expect(await status(put('resold', { AllowModels: 'gpt-4o' }, resellerKey))).toBe(400);
    expect(await updates('resold', { AllowModels: '*' }, resellerKey)).toMatchObject({
      AllowModels: ['gpt-4o-mini'],
    });
  });
});

describe('concurrency', () => {
  it('concurrent recharges never spend more than the payer has', async () => {
    const payerKey = await create(undefined, 'payer', 60);
    await create(payerKey, 'payee', 5); // payer: 55 left
    const results = await Promise.all(
      Array.from({ length: 20 }, () => status(put('payee', { CreditGranted: 10 }, payerKey))),
    );
    const granted = results.filter((s) => s === 200).length;
    // Each call needs the payer above $20 to be let in and $10 to pay: at most 5 can succeed.
    expect(granted).toBeGreaterThanOrEqual(3);
    expect(granted).toBeLessThanOrEqual(5);
    expect(results.every((s) => s === 200 || s === 402 || s === 403)).toBe(true);
    const payer = await get('payer');
    const payee = await get('payee');
    expect(payer['Balance']).toBe(55 - 10 * granted);
    expect(payee['Balance']).toBe(5 + 10 * granted);
    const rows = await gw.app.store.db
      .selectFrom('ledger')
      .innerJoin('accounts', 'accounts.id', 'ledger.account_id')
      .select(['accounts.name', 'ledger.amount'])
      .where('accounts.name', 'in', ['payer', 'payee'])
      .execute();
    const sum = (name: string): number =>
      rows.filter((r) => r.name === name).reduce((s, r) => s + Number(r.amount), 0) / 1e6;
    expect([sum('payer'), sum('payee')]).toEqual([55 - 10 * granted, 5 + 10 * granted]);
  });
});
