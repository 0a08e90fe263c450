// End-to-end: the endpoint policy. Spend the gateway cannot meter is refused with 403
// endpoint_not_allowed and never reaches upstream, unless the operator opens the family for an
// account (AllowEndpoints) or for everyone (ENDPOINTS_ENABLED); some routes are never forwarded.
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { call } from '../support/gateway.js';
import { createChild } from '../support/accounts.js';
import { fileOf, startTenants, type Tenants } from '../support/tenants.js';

let t: Tenants | undefined;
afterEach(async () => {
  await t?.stop();
  t = undefined;
});

async function expectNotAllowed(p: Promise<unknown>): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
  const e = err as InstanceType<typeof OpenAI.PermissionDeniedError>;
  expect(e.status).toBe(403);
  expect(e.code).toBe('endpoint_not_allowed');
}

describe('refused by default', () => {
  it('refuses every family it cannot meter, for root too, and nothing reaches upstream', async () => {
    t = await startTenants();
    const alice = t.client('alice');
    const file = await alice.files.create({ file: await fileOf('{"messages":[]}'), purpose: 'fine-tune' });
    const before = t.mock.requests.length;
    for (const client of [alice, t.gw.client()]) {
      await expectNotAllowed(client.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: file.id }));
      await expectNotAllowed(client.fineTuning.jobs.list().then((p) => p.data));
      await expectNotAllowed(
        client.realtime.clientSecrets.create({ session: { type: 'realtime', model: 'gpt-realtime' } }),
      );
      await expectNotAllowed(client.containers.create({ name: 'c' }));
      await expectNotAllowed(client.videos.create({ model: 'sora-2', prompt: 'a cat' }));
      await expectNotAllowed(client.vectorStores.create({ name: 'v' }));
    }
    expect(t.mock.requests.length).toBe(before);
    expect(t.mock.objects('org-a').total + t.mock.objects('org-b').total).toBe(1); // the file only
  });

  it('never forwards organisation administration, evals, realtime calls or Assistants runs', async () => {
    t = await startTenants();
    const before = t.mock.requests.length;
    for (const [method, path] of [
      ['GET', '/v1/organization/users'],
      ['POST', '/v1/organization/admin_api_keys'],
      ['POST', '/v1/evals'],
      ['POST', '/v1/realtime/calls'],
      ['POST', '/v1/threads/runs'],
      ['POST', '/v1/chatkit/sessions'],
      ['DELETE', '/v1/models/ft:gpt-4o-mini:org:x:1'],
    ] as const) {
      const r = await call(t.gw, path, { method, ...(method === 'POST' && { body: {} }) });
      expect([path, r.status]).toEqual([path, 403]);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('endpoint_not_allowed');
    }
    expect(t.mock.requests.length).toBe(before);
  });

  it('answers a plain GET /v1/realtime with 426: the Realtime API is a WebSocket', async () => {
    t = await startTenants();
    const r = await call(t.gw, '/v1/realtime?model=gpt-realtime', { key: t.key('alice') });
    expect(r.status).toBe(426);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('upgrade_required');
  });
});

describe('opened by the operator', () => {
  it('AllowEndpoints opens a family for one account, forwarded unmetered with its objects owned', async () => {
    t = await startTenants();
    const r = await call(t.gw, '/x-users/alice', {
      method: 'PUT',
      body: { AllowEndpoints: ['fine_tuning'] },
    });
    expect(r.status).toBe(200);
    expect(
      ((await r.json()) as { User: { Updates: { AllowEndpoints: string[] } } }).User.Updates.AllowEndpoints,
    ).toEqual(['fine_tuning']);
    const alice = t.client('alice');
    const file = await alice.files.create({ file: await fileOf('{"messages":[]}'), purpose: 'fine-tune' });
    const balance = t.account('alice').creditUsed;
    const job = await alice.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: file.id });
    expect(job.id).toMatch(/^ftjob-/);
    expect(t.account('alice').creditUsed).toBe(balance); // unmetered: the operator pays upstream
    expect((await alice.fineTuning.jobs.list()).data.map((j) => j.id)).toEqual([job.id]);
    // Another account: still refused, and even when opened it cannot see Alice's job.
    await expectNotAllowed(t.client('bobby').fineTuning.jobs.retrieve(job.id));
    await call(t.gw, '/x-users/bobby', { method: 'PUT', body: { AllowEndpoints: ['fine_tuning'] } });
    await expect(t.client('bobby').fineTuning.jobs.retrieve(job.id)).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
    // The job's result files become Alice's when the job is read.
    t.mock.advance();
    const done = await alice.fineTuning.jobs.retrieve(job.id);
    expect(done.status).toBe('succeeded');
    for (const id of done.result_files) expect((await alice.files.retrieve(id)).id).toBe(id);
    // The fine-tuned model is Alice's: listed and usable for her only, always in its organisation.
    const model = done.fine_tuned_model!;
    const org = t.mock.objects('org-a').ids.files.includes(file.id) ? 'org-a' : 'org-b';
    // The list comes from one pool key: with keys of two organisations, ask twice to reach both.
    const listed = async (name: string): Promise<string[]> => {
      const ids: string[] = [];
      for (let i = 0; i < 2; i++) ids.push(...(await t!.client(name).models.list()).data.map((m) => m.id));
      return ids;
    };
    expect(await listed('alice')).toContain(model);
    expect(await listed('bobby')).not.toContain(model);
    await expect(t.client('bobby').models.retrieve(model)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const before = t.mock.requests.length;
    await expect(
      t.client('bobby').chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }] }),
    ).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect(t.mock.requests.length).toBe(before);
    for (let i = 0; i < 3; i++) {
      await alice.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }] });
      expect(t.mock.organisationOf(t.mock.requests.at(-1)?.key ?? null)).toBe(org);
    }
    // Closing again.
    await call(t.gw, '/x-users/alice', { method: 'PUT', body: { AllowEndpoints: [] } });
    await expectNotAllowed(alice.fineTuning.jobs.retrieve(job.id));
  });

  it('only root, or an account that has a family open itself, may open it; new sub-accounts never inherit it', async () => {
    t = await startTenants({ children: { parent: 100 } });
    const bad = await call(t.gw, '/x-users/parent', { method: 'PUT', body: { AllowEndpoints: ['evals'] } });
    expect(bad.status).toBe(400);
    await call(t.gw, '/x-users/parent', { method: 'PUT', body: { AllowEndpoints: ['videos'] } });
    const kid = await createChild(t.gw, 'kiddo', 30, {}, t.key('parent'));
    const kidInfo = await call(t.gw, '/x-users/kiddo', { key: t.key('parent') });
    expect(((await kidInfo.json()) as [{ AllowEndpoints: string[] }])[0].AllowEndpoints).toEqual([]);
    await expectNotAllowed(
      t.gw
        .client(kid)
        .videos.list()
        .then((p) => p.data),
    );
    const refused = await call(t.gw, '/x-users/kiddo', {
      method: 'PUT',
      key: t.key('parent'),
      body: { AllowEndpoints: ['fine_tuning'] },
    });
    expect(refused.status).toBe(400);
    const granted = await call(t.gw, '/x-users/kiddo', {
      method: 'PUT',
      key: t.key('parent'),
      body: { AllowEndpoints: ['videos'] },
    });
    expect(granted.status).toBe(200);
    expect((await t.gw.client(kid).videos.list()).data).toEqual([]);
  });

  it('ENDPOINTS_ENABLED opens a family for every account', async () => {
    t = await startTenants({ env: { ENDPOINTS_ENABLED: 'containers,videos' } });
    const alice = t.client('alice');
    const c = await alice.containers.create({ name: 'sandbox' });
    expect(c.id).toMatch(/^cntr_/);
    await expect(t.client('bobby').containers.retrieve(c.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect((await alice.containers.list()).data.map((x) => x.id)).toEqual([c.id]);
    await expectNotAllowed(alice.fineTuning.jobs.list().then((p) => p.data));
  });
});
