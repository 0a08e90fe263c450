// Tests of the mock upstream's organisations: every object lives in the organisation of the key that made
// it, other organisations get OpenAI's 404 for it and never see it in lists, ids are unique across them,
// and objects(org) shows what really exists upstream.
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_ORGANISATION, startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';

const KEY_A = 'sk-org-a-0000000000000000000000000000000000000001';
const KEY_B = 'sk-org-b-0000000000000000000000000000000000000002';

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

function sdk(apiKey: string): OpenAI {
  return new OpenAI({ apiKey, baseURL: `${mock.url}/v1`, maxRetries: 0, timeout: 5_000 });
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

async function call(method: string, path: string, key: string | null, body?: unknown): Promise<Answer> {
  const headers: Record<string, string> = { 'openai-beta': 'assistants=v2' };
  if (key !== null) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${mock.url}${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function upload(key: string, text: string, purpose: 'batch' | 'user_data' = 'user_data') {
  return sdk(key).files.create({ file: await toFile(Buffer.from(text), 'data.jsonl'), purpose });
}

describe('mock upstream organisations', () => {
  it('maps keys to organisations, with org-default for other keys and for no key', () => {
    expect(mock.organisationOf(KEY_A)).toBe('org-a');
    expect(mock.organisationOf('sk-unlisted')).toBe(DEFAULT_ORGANISATION);
    expect(mock.organisationOf(null)).toBe('org-default');
    mock.setOrganisation('sk-unlisted', 'org-c');
    expect(mock.organisationOf('sk-unlisted')).toBe('org-c');
    mock.reset();
    expect(mock.organisationOf('sk-unlisted')).toBe('org-default');
    expect(mock.organisationOf(KEY_B)).toBe('org-b');
  });

  it("answers another organisation's file with OpenAI's 404 and leaves it out of lists", async () => {
    const file = await upload(KEY_A, 'hello');
    expect(file.id).toMatch(/^file-mock\d+$/);
    for (const path of [`/v1/files/${file.id}`, `/v1/files/${file.id}/content`]) {
      const other = await call('GET', path, KEY_B);
      expect(other).toEqual({
        status: 404,
        body: {
          error: {
            message: `No such File object: ${file.id}`,
            type: 'invalid_request_error',
            param: 'id',
            code: null,
          },
        },
      });
    }
    expect((await call('DELETE', `/v1/files/${file.id}`, KEY_B)).status).toBe(404);
    expect((await sdk(KEY_B).files.list()).data).toEqual([]);
    expect((await sdk(KEY_A).files.list()).data.map((f) => f.id)).toEqual([file.id]);
    expect(mock.objects('org-a').ids.files).toEqual([file.id]);
    expect(mock.objects('org-b').total).toBe(0);
  });

  it('keeps unlisted keys and key-less requests together in org-default', async () => {
    const file = await upload('sk-somebody', 'x');
    const keyless = await call('GET', `/v1/files/${file.id}`, null);
    expect(keyless.status).toBe(200);
    expect(mock.objects('org-default').ids.files).toEqual([file.id]);
  });

  it('moves a key to another organisation from its next request on', async () => {
    const file = await upload(KEY_A, 'x');
    mock.setOrganisation(KEY_A, 'org-b');
    expect((await call('GET', `/v1/files/${file.id}`, KEY_A)).status).toBe(404);
    expect((await call('GET', `/v1/files/${file.id}`, KEY_B)).status).toBe(404);
    expect(mock.objects('org-a').ids.files).toEqual([file.id]);
  });

  it('draws ids from one counter, with OpenAI prefixes, never reused after reset', async () => {
    const a = await upload(KEY_A, 'a');
    const b = await upload(KEY_B, 'b');
    const resp = await sdk(KEY_A).responses.create({ model: 'gpt-4o-mini', input: 'hi' });
    expect(new Set([a.id, b.id, resp.id]).size).toBe(3);
    expect(resp.id).toMatch(/^resp_mock\d+$/);
    expect(resp.output[0]?.id).toMatch(/^msg_mock\d+$/);
    const before = Number(/\d+$/.exec(resp.id)?.[0]);
    mock.reset();
    const after = await upload(KEY_A, 'c');
    expect(Number(/\d+$/.exec(after.id)?.[0])).toBeGreaterThan(before);
  });

  it('isolates responses, conversations and stored chat completions', async () => {
    const response = await sdk(KEY_A).responses.create({ model: 'gpt-4o-mini', input: 'hi' });
    const conversation = await sdk(KEY_A).conversations.create({});
    const chat = await sdk(KEY_A).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      store: true,
    });
    expect(await call('GET', `/v1/responses/${response.id}`, KEY_B)).toMatchObject({
      status: 404,
      body: { error: { message: `Response with id '${response.id}' not found.` } },
    });
    expect((await call('GET', `/v1/conversations/${conversation.id}`, KEY_B)).status).toBe(404);
    expect((await call('GET', `/v1/chat/completions/${chat.id}`, KEY_B)).status).toBe(404);
    const follow = await call('POST', '/v1/responses', KEY_B, {
      model: 'gpt-4o-mini',
      input: 'and?',
      previous_response_id: response.id,
    });
    expect(follow).toEqual({
      status: 400,
      body: {
        error: {
          message: `Previous response with id '${response.id}' not found.`,
          type: 'invalid_request_error',
          param: 'previous_response_id',
          code: 'previous_response_not_found',
        },
      },
    });
    const inConversation = await call('POST', '/v1/responses', KEY_B, {
      model: 'gpt-4o-mini',
      input: 'x',
      conversation: conversation.id,
    });
    expect(inConversation.status).toBe(404);
    expect((await sdk(KEY_B).chat.completions.list()).data).toEqual([]);
    expect(mock.objects('org-b').total).toBe(0);
  });

  it('refuses references to another organisation: batch input, vector store files, tool resources', async () => {
    const file = await upload(KEY_A, '{}\n', 'batch');
    const batch = await call('POST', '/v1/batches', KEY_B, {
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    expect(batch).toMatchObject({ status: 404, body: { error: { param: 'input_file_id' } } });
    const store = await sdk(KEY_B).vectorStores.create({ name: 'b' });
    expect(
      (await call('POST', `/v1/vector_stores/${store.id}/files`, KEY_B, { file_id: file.id })).status,
    ).toBe(404);
    const storeA = await sdk(KEY_A).vectorStores.create({ name: 'a' });
    const assistant = await call('POST', '/v1/assistants', KEY_B, {
      model: 'gpt-4o-mini',
      tool_resources: { file_search: { vector_store_ids: [storeA.id] } },
    });
    expect(assistant).toMatchObject({
      status: 404,
      body: { error: { message: `No vector store found with id '${storeA.id}'.` } },
    });
    const job = await call('POST', '/v1/fine_tuning/jobs', KEY_B, {
      model: 'gpt-4o-mini',
      training_file: file.id,
    });
    expect(job).toMatchObject({ status: 400, body: { error: { param: 'training_file' } } });
    expect(mock.objects('org-b').counts).toMatchObject({ batches: 0, assistants: 0, fineTuningJobs: 0 });
    expect(mock.objects('org-b').counts.vectorStoreFiles).toBe(0);
  });

  it('isolates vector stores, assistants, threads, containers and videos', async () => {
    const a = sdk(KEY_A);
    const created = [
      `/v1/vector_stores/${(await a.vectorStores.create({ name: 'a' })).id}`,
      `/v1/assistants/${(await a.beta.assistants.create({ model: 'gpt-4o-mini' })).id}`,
      `/v1/threads/${(await a.beta.threads.create({})).id}`,
      `/v1/containers/${(await a.containers.create({ name: 'c' })).id}`,
      `/v1/videos/${(await a.videos.create({ prompt: 'a cat' })).id}`,
    ];
    for (const path of created) {
      expect((await call('GET', path, KEY_A)).status).toBe(200);
      expect((await call('GET', path, KEY_B)).status).toBe(404);
      expect((await call('DELETE', path, KEY_B)).status).toBe(404);
    }
    for (const list of ['/v1/vector_stores', '/v1/assistants', '/v1/containers', '/v1/videos']) {
      expect((await call('GET', list, KEY_B)).body.data).toEqual([]);
      expect((await call('GET', list, KEY_A)).body.data).toHaveLength(1);
    }
    expect(mock.objects('org-a').counts).toMatchObject({
      vectorStores: 1,
      assistants: 1,
      threads: 1,
      containers: 1,
      videos: 1,
    });
  });

  it('shows deletions in objects(), as a frozen snapshot', async () => {
    const file = await upload(KEY_A, 'x');
    const view = mock.objects('org-a');
    expect(view.fileContent(file.id)?.toString()).toBe('x');
    expect(Object.isFrozen(view.records.files[0])).toBe(true);
    await sdk(KEY_A).files.delete(file.id);
    expect(view.counts.files).toBe(1);
    expect(mock.objects('org-a').counts.files).toBe(0);
    expect(mock.objects('org-a').total).toBe(0);
  });

  it('applies canned behaviours per key to the object endpoints too', async () => {
    mock.setKey(KEY_A, { kind: 'rate-limited', retryAfterSec: 3 });
    const limited = await call('POST', '/v1/vector_stores', KEY_A, { name: 'x' });
    expect(limited.status).toBe(429);
    expect(limited.body).toMatchObject({ error: { code: 'rate_limit_exceeded' } });
    expect(String((limited.body.error as { message: string }).message)).toContain('organization org-a');
    expect(mock.objects('org-a').total).toBe(0);
    expect(mock.requests.map((r) => [r.key, r.method, r.path])).toEqual([
      [KEY_A, 'POST', '/v1/vector_stores'],
    ]);
  });

  it('reset() forgets every organisation and pending work', async () => {
    await upload(KEY_A, 'a');
    await sdk(KEY_B).responses.create({ model: 'gpt-4o-mini', input: 'x', background: true });
    expect(mock.objects('org-b').pending).toHaveLength(1);
    mock.reset();
    expect(mock.objects('org-a').total).toBe(0);
    expect(mock.objects('org-b').pending).toEqual([]);
    expect(mock.advance()).toEqual([]);
  });
});
