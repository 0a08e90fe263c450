// End-to-end: a request that names an object goes to the upstream organisation that holds it,
// over a pool whose keys alternate between two organisations; key groups; clear errors when the
// organisation cannot be reached.
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { call } from '../support/gateway.js';
import { fileOf, startTenants, KEY_A, KEY_A2, KEY_B, type Tenants } from '../support/tenants.js';

let t: Tenants | undefined;
afterEach(async () => {
  await t?.stop();
  t = undefined;
});

async function keyId(tenants: Tenants, last4: string): Promise<number> {
  const r = await call(tenants.gw, '/x-keys');
  const keys = (await r.json()) as Array<{ ID: number; Key: string }>;
  const k = keys.find((x) => x.Key.endsWith(last4));
  if (k === undefined) throw new Error(`no key ${last4}`);
  return k.ID;
}

describe('affinity', () => {
  it('ten chained previous_response_id calls over a pool alternating organisations all succeed', async () => {
    t = await startTenants({ poolKeys: [KEY_A, KEY_B] });
    const alice = t.client('alice');
    let prev = await alice.responses.create({ model: 'gpt-4o-mini', input: 'start' });
    const org = t.mock.organisationOf(t.mock.requests.at(-1)?.key ?? null);
    for (let i = 0; i < 10; i++) {
      const next = await alice.responses.create({
        model: 'gpt-4o-mini',
        input: `step ${i}`,
        previous_response_id: prev.id,
      });
      expect(next.previous_response_id).toBe(prev.id);
      // Every link of the chain was answered by the organisation that holds it.
      expect(t.mock.organisationOf(t.mock.requests.at(-1)?.key ?? null)).toBe(org);
      prev = next;
    }
    // Unrelated requests still alternate between the organisations.
    const orgs = new Set<string>();
    for (let i = 0; i < 4; i++) {
      await alice.responses.create({ model: 'gpt-4o-mini', input: 'fresh' });
      orgs.add(t.mock.organisationOf(t.mock.requests.at(-1)?.key ?? null));
    }
    expect(orgs).toEqual(new Set(['org-a', 'org-b']));
  });

  it('reads, downloads and batches run in the organisation that holds the file', async () => {
    t = await startTenants({ poolKeys: [KEY_A, KEY_B] });
    const alice = t.client('alice');
    const files = [];
    for (let i = 0; i < 4; i++)
      files.push(await alice.files.create({ file: await fileOf(`f${i}`), purpose: 'user_data' }));
    const homes = files.map((f) => (t!.mock.objects('org-a').ids.files.includes(f.id) ? 'org-a' : 'org-b'));
    expect(new Set(homes)).toEqual(new Set(['org-a', 'org-b']));
    for (const f of files) {
      for (let i = 0; i < 3; i++) expect((await alice.files.retrieve(f.id)).id).toBe(f.id);
      expect(await (await alice.files.content(f.id)).text()).toMatch(/^f\d$/);
    }
  });

  it('a key of the same group serves an object whose key is disabled; without a group the answer is 503 object_unavailable', async () => {
    t = await startTenants({ poolKeys: [KEY_A, KEY_A2, KEY_B] });
    const alice = t.client('alice');
    const a1 = await keyId(t, KEY_A.slice(-4));
    const a2 = await keyId(t, KEY_A2.slice(-4));
    // Find a file held by key A1 (round-robin: the first upload goes to the first key).
    let file: OpenAI.FileObject | undefined;
    for (let i = 0; i < 3 && file === undefined; i++) {
      const f = await alice.files.create({ file: await fileOf(`g${i}`), purpose: 'user_data' });
      if (t.mock.requests.at(-1)?.key === KEY_A) file = f;
    }
    if (file === undefined) throw new Error('no file on key A1');
    expect((await call(t.gw, `/x-keys/${a1}`, { method: 'PUT', body: { Status: false } })).status).toBe(200);
    const unavailable = await alice.files.retrieve(file.id).catch((e: unknown) => e);
    expect(unavailable).toBeInstanceOf(OpenAI.APIError);
    expect((unavailable as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
    expect((unavailable as InstanceType<typeof OpenAI.APIError>).code).toBe('object_unavailable');
    // The two org-a keys are grouped: key A2 now serves the file held by A1.
    for (const id of [a1, a2]) {
      const r = await call(t.gw, `/x-keys/${id}`, { method: 'PUT', body: { Group: 'org-a' } });
      expect(r.status).toBe(200);
      expect(((await r.json()) as { Key: { Group: string } }).Key.Group).toBe('org-a');
    }
    // The file was recorded with key A1 and no group: its pin is the key alone.
    const still = await alice.files.retrieve(file.id).catch((e: unknown) => e);
    expect((still as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
    // Objects created once the keys are grouped follow the group.
    let grouped: OpenAI.FileObject | undefined;
    expect((await call(t.gw, `/x-keys/${a1}`, { method: 'PUT', body: { Status: true } })).status).toBe(200);
    for (let i = 0; i < 3 && grouped === undefined; i++) {
      const f = await alice.files.create({ file: await fileOf(`h${i}`), purpose: 'user_data' });
      if (t.mock.requests.at(-1)?.key === KEY_A) grouped = f;
    }
    if (grouped === undefined) throw new Error('no file on key A1');
    expect((await call(t.gw, `/x-keys/${a1}`, { method: 'PUT', body: { Status: false } })).status).toBe(200);
    expect((await alice.files.retrieve(grouped.id)).id).toBe(grouped.id);
    expect(t.mock.requests.at(-1)?.key).toBe(KEY_A2);
  });

  it('objects of two organisations in one request answer 400 objects_in_different_organizations', async () => {
    t = await startTenants({ poolKeys: [KEY_A, KEY_B] });
    const alice = t.client('alice');
    const r1 = await alice.responses.create({ model: 'gpt-4o-mini', input: 'one' });
    const org1 = t.mock.organisationOf(t.mock.requests.at(-1)?.key ?? null);
    let file: OpenAI.FileObject | undefined;
    for (let i = 0; i < 3 && file === undefined; i++) {
      const f = await alice.files.create({ file: await fileOf('x'), purpose: 'user_data' });
      if (t.mock.organisationOf(t.mock.requests.at(-1)?.key ?? null) !== org1) file = f;
    }
    if (file === undefined) throw new Error('no file in the other organisation');
    const before = t.mock.requests.length;
    const err = await alice.responses
      .create({
        model: 'gpt-4o-mini',
        previous_response_id: r1.id,
        input: [{ role: 'user', content: [{ type: 'input_file', file_id: file.id }] }],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).code).toBe(
      'objects_in_different_organizations',
    );
    expect(t.mock.requests.length).toBe(before);
  });

  it('keeps an object’s key through a restart', async () => {
    t = await startTenants({ poolKeys: [KEY_A, KEY_B] });
    const file = await t
      .client('alice')
      .files.create({ file: await fileOf('persist'), purpose: 'user_data' });
    const holder = t.mock.requests.at(-1)?.key;
    await t.restart();
    const next = t.gw;
    for (let i = 0; i < 3; i++) {
      expect((await next.client(t.key('alice')).files.retrieve(file.id)).id).toBe(file.id);
      expect(t.mock.requests.at(-1)?.key).toBe(holder);
    }
    await expect(next.client(t.key('bobby')).files.retrieve(file.id)).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
  });
});

describe('/x-keys groups', () => {
  it('takes Group on POST and PUT, shows it, and refuses a malformed one', async () => {
    t = await startTenants({ poolKeys: [KEY_A] });
    const add = await call(t.gw, '/x-keys', {
      body: { SecretKey: 'sk-upstream-grouped-0000000001', Group: 'org-z' },
    });
    expect(add.status).toBe(200);
    const added = (await add.json()) as { Key: { ID: number; Group: string | null } };
    expect(added.Key.Group).toBe('org-z');
    const bad = await call(t.gw, `/x-keys/${added.Key.ID}`, {
      method: 'PUT',
      body: { Group: 'no spaces please' },
    });
    expect(bad.status).toBe(400);
    const cleared = await call(t.gw, `/x-keys/${added.Key.ID}`, { method: 'PUT', body: { Group: null } });
    expect(((await cleared.json()) as { Key: { Group: string | null } }).Key.Group).toBeNull();
    const none = await call(t.gw, `/x-keys/${added.Key.ID}`, { method: 'PUT', body: {} });
    expect(none.status).toBe(400);
  });
});
