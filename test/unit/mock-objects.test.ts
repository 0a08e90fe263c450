// Tests of the mock upstream's other objects: cursor paging, uploads that become files, fine-tuning jobs
// and the visibility of their models, vector stores, the Assistants API, containers, videos and realtime
// client secrets.
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mockVideoBytes, startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';

const KEY_A = 'sk-obj-a-000000000000000000000000000000000000000001';
const KEY_B = 'sk-obj-b-000000000000000000000000000000000000000002';

let mock: MockUpstream;

beforeAll(async () => {
  mock = await startMockUpstream({ organisations: { [KEY_A]: 'org-a', [KEY_B]: 'org-b' } });
});

afterAll(async () => {
  await mock.close();
});

beforeEach(() => {
  mock.reset();
});

function sdk(apiKey = KEY_A): OpenAI {
  return new OpenAI({ apiKey, baseURL: `${mock.url}/v1`, maxRetries: 0, timeout: 5_000 });
}

async function raw(
  method: string,
  path: string,
  body?: unknown,
  init: { key?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${mock.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${init.key ?? KEY_A}`,
      'content-type': 'application/json',
      ...init.headers,
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function upload(text: string, purpose: 'fine-tune' | 'user_data' = 'user_data', key = KEY_A) {
  return sdk(key).files.create({ file: await toFile(Buffer.from(text), 'f.jsonl'), purpose });
}

describe('mock upstream paging', () => {
  it('pages newest first with limit and after, and honours order=asc', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await sdk().containers.create({ name: `c${i}` })).id);
    const first = await raw('GET', '/v1/containers?limit=2');
    expect(first.body).toEqual({
      object: 'list',
      data: [expect.objectContaining({ id: ids[4] }), expect.objectContaining({ id: ids[3] })],
      first_id: ids[4],
      last_id: ids[3],
      has_more: true,
    });
    const next = await raw('GET', `/v1/containers?limit=2&after=${ids[3]}`);
    expect((next.body.data as { id: string }[]).map((c) => c.id)).toEqual([ids[2], ids[1]]);
    const asc = await raw('GET', `/v1/containers?order=asc&after=${ids[2]}`);
    expect(asc.body).toMatchObject({ first_id: ids[3], last_id: ids[4], has_more: false });
    const all: string[] = [];
    for await (const container of sdk().containers.list({ limit: 2 })) all.push(container.id);
    expect(all).toEqual([...ids].reverse());
  });

  it('pages back with before where OpenAI has it, and answers empty lists with null ids', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await sdk().vectorStores.create({ name: `v${i}` })).id);
    const back = await raw('GET', `/v1/vector_stores?limit=2&before=${ids[0]}`);
    expect((back.body.data as { id: string }[]).map((s) => s.id)).toEqual([ids[2], ids[1]]);
    expect(back.body.has_more).toBe(true);
    expect((await raw('GET', '/v1/vector_stores', undefined, { key: KEY_B })).body).toEqual({
      object: 'list',
      data: [],
      first_id: null,
      last_id: null,
      has_more: false,
    });
  });

  it('rejects bad limits and orders with a 400', async () => {
    expect((await raw('GET', '/v1/containers?limit=0')).body).toMatchObject({
      error: { param: 'limit', code: 'integer_below_min_value' },
    });
    expect((await raw('GET', '/v1/containers?limit=101')).status).toBe(400);
    expect((await raw('GET', '/v1/containers?order=sideways')).status).toBe(400);
  });

  it('filters files by purpose', async () => {
    const tune = await upload('{}', 'fine-tune');
    await upload('{}', 'user_data');
    expect((await sdk().files.list({ purpose: 'fine-tune' })).data.map((f) => f.id)).toEqual([tune.id]);
  });
});

describe('mock upstream uploads', () => {
  it('turns parts into a file with the concatenated content', async () => {
    const created = await sdk().uploads.create({
      filename: 'big.jsonl',
      purpose: 'fine-tune',
      bytes: 11,
      mime_type: 'text/jsonl',
    });
    expect(created).toMatchObject({ object: 'upload', status: 'pending', file: null });
    expect(created.id).toMatch(/^upload_mock\d+$/);
    const one = await sdk().uploads.parts.create(created.id, { data: await toFile(Buffer.from('hello ')) });
    const two = await sdk().uploads.parts.create(created.id, { data: await toFile(Buffer.from('world')) });
    expect(one).toMatchObject({ object: 'upload.part', upload_id: created.id });
    expect(one.id).toMatch(/^part_mock\d+$/);
    const done = await sdk().uploads.complete(created.id, { part_ids: [one.id, two.id] });
    expect(done.status).toBe('completed');
    expect(done.file).toMatchObject({
      object: 'file',
      bytes: 11,
      filename: 'big.jsonl',
      purpose: 'fine-tune',
    });
    const fileId = String(done.file?.id);
    expect(await (await sdk().files.content(fileId)).text()).toBe('hello world');
    expect(mock.objects('org-a').ids.files).toEqual([fileId]);
    expect((await raw('POST', `/v1/uploads/${created.id}/cancel`)).status).toBe(400);
  });

  it('refuses a size mismatch, foreign uploads and parts after cancel', async () => {
    const created = await sdk().uploads.create({
      filename: 'x',
      purpose: 'user_data',
      bytes: 3,
      mime_type: 'text/plain',
    });
    const part = await sdk().uploads.parts.create(created.id, { data: await toFile(Buffer.from('ab')) });
    expect((await raw('POST', `/v1/uploads/${created.id}/complete`, { part_ids: [part.id] })).status).toBe(
      400,
    );
    expect((await raw('POST', `/v1/uploads/${created.id}/cancel`, undefined, { key: KEY_B })).status).toBe(
      404,
    );
    expect((await sdk().uploads.cancel(created.id)).status).toBe('cancelled');
    await expect(
      sdk().uploads.parts.create(created.id, { data: await toFile(Buffer.from('c')) }),
    ).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    expect(mock.objects('org-a').counts.files).toBe(0);
  });
});

describe('mock upstream fine-tuning', () => {
  it('runs a job on advance() and shows its model to its organisation only', async () => {
    const training = await upload('x'.repeat(100), 'fine-tune');
    const job = await sdk().fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: training.id });
    expect(job).toMatchObject({
      object: 'fine_tuning.job',
      status: 'validating_files',
      fine_tuned_model: null,
      organization_id: 'org-a',
    });
    expect(job.id).toMatch(/^ftjob-mock\d+$/);
    mock.advance();
    const done = await sdk().fineTuning.jobs.retrieve(job.id);
    const model = `ft:gpt-4o-mini:org-a::${job.id.slice('ftjob-'.length)}`;
    // ceil(100 bytes / 4) x 3 epochs.
    expect(done).toMatchObject({ status: 'succeeded', trained_tokens: 75, fine_tuned_model: model });
    expect(done.result_files).toHaveLength(1);

    expect((await sdk().models.list()).data.map((m) => m.id)).toContain(model);
    expect((await sdk(KEY_B).models.list()).data.map((m) => m.id)).not.toContain(model);
    expect(
      (await raw('GET', `/v1/models/${encodeURIComponent(model)}`, undefined, { key: KEY_B })).status,
    ).toBe(404);
    const chat = { model, messages: [{ role: 'user', content: 'hi' }] };
    expect((await raw('POST', '/v1/chat/completions', chat)).status).toBe(200);
    expect(await raw('POST', '/v1/chat/completions', chat, { key: KEY_B })).toMatchObject({
      status: 404,
      body: { error: { code: 'model_not_found' } },
    });
    expect(
      (await raw('DELETE', `/v1/models/${encodeURIComponent(model)}`, undefined, { key: KEY_B })).status,
    ).toBe(404);
    expect(await sdk().models.delete(model)).toEqual({ id: model, object: 'model', deleted: true });
    expect((await sdk().models.list()).data.map((m) => m.id)).not.toContain(model);
    expect((await raw('DELETE', '/v1/models/gpt-4o-mini')).status).toBe(403);
  });

  it('honours n_epochs and suffix, lists events newest first and cancels', async () => {
    const training = await upload('abcdefgh', 'fine-tune');
    const job = await sdk().fineTuning.jobs.create({
      model: 'gpt-4o-mini',
      training_file: training.id,
      suffix: 'mine',
      method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 5 } } },
    });
    const other = await sdk().fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: training.id });
    expect((await sdk().fineTuning.jobs.cancel(other.id)).status).toBe('cancelled');
    expect(mock.advance()).toEqual([job.id]);
    const done = await sdk().fineTuning.jobs.retrieve(job.id);
    expect(done.trained_tokens).toBe(2 * 5);
    expect(done.fine_tuned_model).toBe(`ft:gpt-4o-mini:org-a:mine:${job.id.slice('ftjob-'.length)}`);
    const events = await sdk().fineTuning.jobs.listEvents(job.id);
    expect(events.data[0]?.message).toBe('The job has successfully completed');
    expect(events.data.at(-1)?.message).toContain('Validating training file');
    expect(events.data[0]?.id).toMatch(/^ftevent-mock\d+$/);
    expect((await sdk().fineTuning.jobs.list()).data.map((j) => j.id)).toEqual([other.id, job.id]);
    expect((await raw('POST', `/v1/fine_tuning/jobs/${job.id}/cancel`)).status).toBe(400);
    expect((await raw('GET', `/v1/fine_tuning/jobs/${job.id}`, undefined, { key: KEY_B })).status).toBe(404);
  });
});

describe('mock upstream vector stores', () => {
  it('adds files singly and in batches, lists, searches and deletes', async () => {
    const f1 = await upload('12345');
    const f2 = await upload('123');
    const store = await sdk().vectorStores.create({ name: 'docs', file_ids: [f1.id] });
    expect(store).toMatchObject({
      object: 'vector_store',
      name: 'docs',
      status: 'completed',
      usage_bytes: 5,
    });
    expect(store.id).toMatch(/^vs_mock\d+$/);
    const batch = await sdk().vectorStores.fileBatches.create(store.id, { file_ids: [f2.id] });
    expect(batch).toMatchObject({ object: 'vector_store.files_batch', status: 'completed' });
    expect(batch.id).toMatch(/^vsfb_mock\d+$/);
    expect((await sdk().vectorStores.fileBatches.retrieve(batch.id, { vector_store_id: store.id })).id).toBe(
      batch.id,
    );
    const files = await sdk().vectorStores.files.list(store.id);
    expect(files.data.map((f) => f.id)).toEqual([f2.id, f1.id]);
    expect((await sdk().vectorStores.retrieve(store.id)).file_counts).toMatchObject({
      completed: 2,
      total: 2,
    });
    const search = await raw('POST', `/v1/vector_stores/${store.id}/search`, { query: 'hello' });
    expect(search.body).toEqual({
      object: 'vector_store.search_results.page',
      search_query: ['hello'],
      data: [],
      has_more: false,
      next_page: null,
    });
    expect(await sdk().vectorStores.files.delete(f1.id, { vector_store_id: store.id })).toEqual({
      id: f1.id,
      object: 'vector_store.file.deleted',
      deleted: true,
    });
    expect((await sdk().vectorStores.update(store.id, { name: 'renamed' })).name).toBe('renamed');
    expect(await sdk().vectorStores.delete(store.id)).toEqual({
      id: store.id,
      object: 'vector_store.deleted',
      deleted: true,
    });
    expect(mock.objects('org-a').counts).toMatchObject({ vectorStores: 0, vectorStoreFiles: 0, files: 2 });
  });
});

describe('mock upstream Assistants API', () => {
  it('needs the v2 beta header', async () => {
    const res = await raw('GET', '/v1/assistants');
    expect(res).toMatchObject({ status: 400, body: { error: { type: 'invalid_request_error' } } });
  });

  it('creates, lists, updates and deletes assistants, threads and messages', async () => {
    const assistant = await sdk().beta.assistants.create({ model: 'gpt-4o-mini', name: 'helper' });
    expect(assistant).toMatchObject({ object: 'assistant', name: 'helper', tools: [] });
    expect(assistant.id).toMatch(/^asst_mock\d+$/);
    expect((await sdk().beta.assistants.update(assistant.id, { name: 'better' })).name).toBe('better');
    expect((await sdk().beta.assistants.list()).data.map((a) => a.id)).toEqual([assistant.id]);
    const thread = await sdk().beta.threads.create({ messages: [{ role: 'user', content: 'first' }] });
    expect(thread.id).toMatch(/^thread_mock\d+$/);
    const message = await sdk().beta.threads.messages.create(thread.id, { role: 'user', content: 'second' });
    expect(message).toMatchObject({
      object: 'thread.message',
      thread_id: thread.id,
      content: [{ type: 'text', text: { value: 'second', annotations: [] } }],
    });
    const listed = await sdk().beta.threads.messages.list(thread.id);
    expect(listed.data.map((m) => m.content[0]?.type === 'text' && m.content[0].text.value)).toEqual([
      'second',
      'first',
    ]);
    expect((await sdk().beta.threads.messages.retrieve(message.id, { thread_id: thread.id })).id).toBe(
      message.id,
    );
    expect((await sdk().beta.threads.update(thread.id, { metadata: { a: '1' } })).metadata).toEqual({
      a: '1',
    });
    expect(await sdk().beta.threads.delete(thread.id)).toMatchObject({
      object: 'thread.deleted',
      deleted: true,
    });
    expect(await sdk().beta.assistants.delete(assistant.id)).toMatchObject({ object: 'assistant.deleted' });
    expect(mock.objects('org-a').total).toBe(0);
  });
});

describe('mock upstream containers, videos and client secrets', () => {
  it('creates, gets and deletes containers', async () => {
    const container = await sdk().containers.create({ name: 'box' });
    expect(container).toMatchObject({ object: 'container', name: 'box', status: 'running' });
    expect(container.id).toMatch(/^cntr_mock\d+$/);
    expect((await sdk().containers.retrieve(container.id)).id).toBe(container.id);
    expect((await raw('DELETE', `/v1/containers/${container.id}`)).body).toEqual({
      id: container.id,
      object: 'container.deleted',
      deleted: true,
    });
    expect(mock.objects('org-a').counts.containers).toBe(0);
  });

  it('queues videos until advance(), then serves their content', async () => {
    const video = await sdk().videos.create({ prompt: 'a cat', seconds: '8' });
    expect(video).toMatchObject({
      object: 'video',
      status: 'queued',
      progress: 0,
      seconds: '8',
      model: 'sora-2',
    });
    expect(video.id).toMatch(/^video_mock\d+$/);
    expect((await raw('GET', `/v1/videos/${video.id}/content`)).status).toBe(400);
    expect((await raw('DELETE', `/v1/videos/${video.id}`)).status).toBe(400);
    mock.advance();
    expect(await sdk().videos.retrieve(video.id)).toMatchObject({ status: 'completed', progress: 100 });
    const content = await sdk().videos.downloadContent(video.id);
    expect(content.headers.get('content-type')).toBe('video/mp4');
    expect(Buffer.from(await content.arrayBuffer()).equals(mockVideoBytes(video.id))).toBe(true);
    const thumbnail = await fetch(`${mock.url}/v1/videos/${video.id}/content?variant=thumbnail`, {
      headers: { authorization: `Bearer ${KEY_A}` },
    });
    expect(thumbnail.headers.get('content-type')).toBe('image/webp');
    expect((await raw('GET', `/v1/videos/${video.id}/content`, undefined, { key: KEY_B })).status).toBe(404);
    expect(await sdk().videos.delete(video.id)).toEqual({
      id: video.id,
      object: 'video.deleted',
      deleted: true,
    });
  });

  it('mints realtime client secrets', async () => {
    const secret = await sdk().realtime.clientSecrets.create({
      session: { type: 'realtime', model: 'gpt-realtime' },
      expires_after: { anchor: 'created_at', seconds: 120 },
    });
    expect(secret.value).toMatch(/^ek_mock\d+$/);
    expect(secret.expires_at - Math.floor(Date.now() / 1000)).toBeGreaterThan(100);
    expect(secret.session).toMatchObject({ type: 'realtime', model: 'gpt-realtime' });
    expect(mock.objects('org-a').ids.clientSecrets).toEqual([secret.value]);
  });
});
