// End-to-end, official SDK: sub-accounts sharing the pool's upstream organisations cannot list,
// read, download, use or delete each other's objects; the gateway answers 404 as for a missing
// id, and nothing of the other tenant's reaches upstream.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../support/gateway.js';
import { fileOf, startTenants, KEY_A, type Tenants } from '../support/tenants.js';

let t: Tenants;
beforeAll(async () => {
  t = await startTenants({ children: { alice: 50, bobby: 50 } });
  // Vector stores are refused by default (storage cannot be metered): open them for both.
  for (const name of ['alice', 'bobby']) {
    const r = await call(t.gw, `/x-users/${name}`, {
      method: 'PUT',
      body: { AllowEndpoints: ['vector_stores'] },
    });
    expect(r.status).toBe(200);
  }
});
afterAll(() => t.stop());

/** The SDK call fails with 404 and the gateway's own "no such object" body. */
async function expect404(p: Promise<unknown>, param?: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(OpenAI.NotFoundError);
  const e = err as InstanceType<typeof OpenAI.NotFoundError>;
  expect(e.status).toBe(404);
  expect(e.message).toMatch(/No such .* object/);
  if (param !== undefined) expect(e.param).toBe(param);
}

describe('files', () => {
  it('another sub-account can neither read, download nor delete a file, and upstream never hears of it', async () => {
    const alice = t.client('alice');
    const bob = t.client('bobby');
    const file = await alice.files.create({ file: await fileOf('{"a":1}\n'), purpose: 'user_data' });
    const before = t.upstreamCallsFor(file.id);
    await expect404(bob.files.retrieve(file.id));
    await expect404(bob.files.content(file.id));
    await expect404(bob.files.delete(file.id));
    expect(t.upstreamCallsFor(file.id)).toBe(before);
    // The owner still has it, whole.
    expect((await alice.files.retrieve(file.id)).id).toBe(file.id);
    expect(await (await alice.files.content(file.id)).text()).toBe('{"a":1}\n');
  });

  it('lists only the caller’s files, with cursor paging and the purpose filter', async () => {
    const alice = t.client('alice');
    const bob = t.client('bobby');
    const mine: string[] = [];
    for (let i = 0; i < 3; i++)
      mine.push((await bob.files.create({ file: await fileOf(`bob ${i}`), purpose: 'assistants' })).id);
    const other = await alice.files.create({ file: await fileOf('alice'), purpose: 'assistants' });
    const seen: string[] = [];
    for await (const f of bob.files.list({ limit: 2 })) seen.push(f.id);
    expect(seen).toEqual([...mine].reverse()); // newest first, all pages
    expect(seen).not.toContain(other.id);
    const page = await bob.files.list({ limit: 2, purpose: 'user_data' });
    expect(page.data).toEqual([]);
    // The items are the objects themselves, read from upstream.
    const first = await bob.files.list({ limit: 1 });
    expect(first.data[0]).toMatchObject({ id: mine[2], object: 'file', purpose: 'assistants' });
    expect(first.has_more).toBe(true);
    // Another tenant's id is not a cursor either.
    await expect404(bob.files.list({ after: other.id }).then((p) => p.data));
  });

  it('an id the gateway never saw created is answered 404 for everyone, without asking upstream', async () => {
    // Created directly upstream with a pool key, outside the gateway.
    const form = new FormData();
    form.append('purpose', 'user_data');
    form.append('file', new Blob(['outside']), 'outside.txt');
    const direct = await fetch(`${t.mock.url}/v1/files`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY_A}` },
      body: form,
    });
    const { id } = (await direct.json()) as { id: string };
    const before = t.upstreamCallsFor(id);
    await expect404(t.client('alice').files.retrieve(id));
    await expect404(t.gw.client().files.retrieve(id)); // root too
    expect(t.upstreamCallsFor(id)).toBe(before);
  });

  it('an ancestor does not see its descendants’ objects', async () => {
    const file = await t.client('alice').files.create({ file: await fileOf('mine'), purpose: 'user_data' });
    await expect404(t.gw.client().files.retrieve(file.id));
    const rootList = await t.gw.client().files.list();
    expect(rootList.data.map((f) => f.id)).not.toContain(file.id);
  });

  it('a deleted file is gone for its owner too, answered by the gateway', async () => {
    const alice = t.client('alice');
    const file = await alice.files.create({ file: await fileOf('bye'), purpose: 'user_data' });
    expect((await alice.files.delete(file.id)).deleted).toBe(true);
    const before = t.upstreamCallsFor(file.id);
    await expect404(alice.files.retrieve(file.id));
    expect(t.upstreamCallsFor(file.id)).toBe(before);
  });
});

describe('responses and conversations', () => {
  it('a stored response is its creator’s: another tenant can neither read, delete nor continue it', async () => {
    const alice = t.client('alice');
    const bob = t.client('bobby');
    const resp = await alice.responses.create({ model: 'gpt-4o-mini', input: 'hello' });
    const before = t.upstreamCallsFor(resp.id);
    await expect404(bob.responses.retrieve(resp.id));
    await expect404(bob.responses.delete(resp.id));
    await expect404(bob.responses.inputItems.list(resp.id).then((p) => p.data));
    const bodiesBefore = t.mock.requests.filter((r) => r.body.includes(resp.id)).length;
    await expect404(
      bob.responses.create({ model: 'gpt-4o-mini', input: 'go on', previous_response_id: resp.id }),
      'previous_response_id',
    );
    expect(t.upstreamCallsFor(resp.id)).toBe(before);
    expect(t.mock.requests.filter((r) => r.body.includes(resp.id)).length).toBe(bodiesBefore);
    // The owner continues it.
    const next = await alice.responses.create({
      model: 'gpt-4o-mini',
      input: 'go on',
      previous_response_id: resp.id,
    });
    expect(next.previous_response_id).toBe(resp.id);
  });

  it('a response created with store: false is nobody’s object', async () => {
    const alice = t.client('alice');
    const resp = await alice.responses.create({ model: 'gpt-4o-mini', input: 'x', store: false });
    await expect404(alice.responses.retrieve(resp.id));
  });

  it('a conversation is its creator’s, in the path and in a response body', async () => {
    const alice = t.client('alice');
    const bob = t.client('bobby');
    const conv = await alice.conversations.create({ metadata: { topic: 'a' } });
    await expect404(bob.conversations.retrieve(conv.id));
    await expect404(bob.conversations.items.list(conv.id).then((p) => p.data));
    await expect404(
      bob.responses.create({ model: 'gpt-4o-mini', input: 'x', conversation: conv.id }),
      'conversation',
    );
    const r = await alice.responses.create({ model: 'gpt-4o-mini', input: 'x', conversation: conv.id });
    expect(r.id).toMatch(/^resp_/);
  });

  it('a file named inside a response input must be the caller’s', async () => {
    const aliceFile = await t
      .client('alice')
      .files.create({ file: await fileOf('secret'), purpose: 'user_data' });
    await expect404(
      t.client('bobby').responses.create({
        model: 'gpt-4o-mini',
        input: [{ role: 'user', content: [{ type: 'input_file', file_id: aliceFile.id }] }],
      }),
      'file_id',
    );
  });
});

describe('stored chat completions, batches and vector stores', () => {
  it('stored chat completions: read, list, update and delete are the creator’s only', async () => {
    const alice = t.client('alice');
    const bob = t.client('bobby');
    const c = await alice.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'remember me' }],
      store: true,
      metadata: { k: 'v' },
    });
    await bob.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'x' }],
      store: true,
    });
    await expect404(bob.chat.completions.retrieve(c.id));
    await expect404(bob.chat.completions.update(c.id, { metadata: { k: 'w' } }));
    await expect404(bob.chat.completions.delete(c.id));
    await expect404(bob.chat.completions.messages.list(c.id).then((p) => p.data));
    const bobs = await bob.chat.completions.list();
    expect(bobs.data.map((x) => x.id)).not.toContain(c.id);
    expect(bobs.data).toHaveLength(1);
    const alices = await alice.chat.completions.list({ metadata: { k: 'v' } });
    expect(alices.data.map((x) => x.id)).toEqual([c.id]);
    // Not stored (no store: true): nobody's object.
    const plain = await alice.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'x' }],
    });
    await expect404(alice.chat.completions.retrieve(plain.id));
  });

  it('batches: another tenant cannot read, list or cancel them', async () => {
    const alice = t.client('alice');
    const bob = t.client('bobby');
    const input = await alice.files.create({
      file: await fileOf(
        JSON.stringify({
          custom_id: '1',
          method: 'POST',
          url: '/v1/chat/completions',
          body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 10 },
        }),
      ),
      purpose: 'batch',
    });
    const batch = await alice.batches.create({
      input_file_id: input.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    await expect404(bob.batches.retrieve(batch.id));
    await expect404(bob.batches.cancel(batch.id));
    expect((await bob.batches.list()).data.map((b) => b.id)).not.toContain(batch.id);
    expect((await alice.batches.list()).data.map((b) => b.id)).toContain(batch.id);
    // Bob cannot run a batch over Alice's input file either.
    await expect404(
      bob.batches.create({
        input_file_id: input.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      }),
      'input_file_id',
    );
  });

  it('vector stores: another tenant can neither reach one nor attach the owner’s file to its own', async () => {
    const alice = t.client('alice');
    const bob = t.client('bobby');
    const file = await alice.files.create({ file: await fileOf('doc'), purpose: 'assistants' });
    const vs = await alice.vectorStores.create({ name: 'alice docs', file_ids: [file.id] });
    await expect404(bob.vectorStores.retrieve(vs.id));
    await expect404(bob.vectorStores.delete(vs.id));
    await expect404(bob.vectorStores.files.list(vs.id).then((p) => p.data));
    expect((await bob.vectorStores.list()).data.map((v) => v.id)).not.toContain(vs.id);
    const own = await bob.vectorStores.create({ name: 'bob docs' });
    await expect404(bob.vectorStores.files.create(own.id, { file_id: file.id }), 'file_id');
    expect((await alice.vectorStores.files.list(vs.id)).data.map((f) => f.id)).toEqual([file.id]);
    expect((await alice.vectorStores.delete(vs.id)).deleted).toBe(true);
    await expect404(alice.vectorStores.retrieve(vs.id));
  });
});

describe('idempotency keys', () => {
  it('keeps one tenant’s Idempotency-Key apart from another’s upstream', async () => {
    const body = { model: 'gpt-4o-mini', input: 'same key' };
    for (const name of ['alice', 'bobby']) {
      const r = await call(t.gw, '/v1/responses', {
        key: t.key(name),
        body,
        headers: { 'idempotency-key': 'order-42' },
      });
      expect(r.status).toBe(200);
    }
    const sent = t.mock.requests
      .filter((r) => r.path === '/v1/responses')
      .slice(-2)
      .map((r) => r.headers['idempotency-key']);
    expect(sent).toEqual([
      `acct-${t.account('alice').id}:order-42`,
      `acct-${t.account('bobby').id}:order-42`,
    ]);
  });
});
