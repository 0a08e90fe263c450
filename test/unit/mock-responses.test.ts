// Tests of the mock upstream's stored Responses, background responses, Conversations and stored chat
// completions: what is stored, what a follow-up is billed for, and how background work finishes.
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';

const KEY = 'sk-resp-0000000000000000000000000000000000000000001';
const ORG = 'org-resp';

let mock: MockUpstream;

beforeAll(async () => {
  mock = await startMockUpstream({ organisations: { [KEY]: ORG } });
});

afterAll(async () => {
  await mock.close();
});

beforeEach(() => {
  mock.reset();
});

function sdk(): OpenAI {
  return new OpenAI({ apiKey: KEY, baseURL: `${mock.url}/v1`, maxRetries: 0, timeout: 5_000 });
}

async function raw(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${mock.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: await res.json() };
}

describe('mock upstream responses', () => {
  it('stores responses unless store is false, and deletes them', async () => {
    const stored = await sdk().responses.create({ model: 'gpt-4o-mini', input: 'abcd' });
    const unstored = await sdk().responses.create({ model: 'gpt-4o-mini', input: 'abcd', store: false });
    expect(unstored).toMatchObject({ store: false });
    expect((await sdk().responses.retrieve(stored.id)).output_text).toBe('Hello from mock');
    expect((await raw('GET', `/v1/responses/${unstored.id}`)).status).toBe(404);
    expect(mock.objects(ORG).ids.responses).toEqual([stored.id]);
    expect(await raw('DELETE', `/v1/responses/${stored.id}`)).toEqual({
      status: 200,
      body: { id: stored.id, object: 'response', deleted: true },
    });
    expect((await raw('GET', `/v1/responses/${stored.id}`)).status).toBe(404);
    expect(mock.objects(ORG).counts.responses).toBe(0);
  });

  it('chains previous_response_id, echoing it and billing the context', async () => {
    const first = await sdk().responses.create({ model: 'gpt-4o-mini', input: 'abcdefgh' });
    const second = await sdk().responses.create({
      model: 'gpt-4o-mini',
      input: 'abcd',
      previous_response_id: first.id,
    });
    expect(second.previous_response_id).toBe(first.id);
    expect(first.previous_response_id).toBeNull();
    // 4 new characters + 8 of the first input + 15 of its output = 27 characters -> 7 tokens.
    expect(second.usage?.input_tokens).toBe(7);
    const counted = await raw('POST', '/v1/responses/input_tokens', {
      model: 'gpt-4o-mini',
      input: 'abcd',
      previous_response_id: first.id,
    });
    expect(counted).toEqual({ status: 200, body: { object: 'response.input_tokens', input_tokens: 7 } });
    expect((await raw('POST', '/v1/responses/input_tokens', { input: 'abcdefgh' })).body).toEqual({
      object: 'response.input_tokens',
      input_tokens: 2,
    });
  });

  it('lists the input items of a response', async () => {
    const response = await sdk().responses.create({
      model: 'gpt-4o-mini',
      input: [
        { role: 'user', content: 'one' },
        { role: 'user', content: 'two' },
      ],
    });
    const items = await sdk().responses.inputItems.list(response.id, { order: 'asc' });
    expect(items.data.map((item) => (item.type === 'message' ? item.content : null))).toEqual([
      [{ type: 'input_text', text: 'one' }],
      [{ type: 'input_text', text: 'two' }],
    ]);
    expect(items.data[0]?.id).toMatch(/^msg_mock\d+$/);
  });

  it('answers background responses queued, and finishes them on advance() like a foreground call', async () => {
    const foreground = await sdk().responses.create({ model: 'gpt-4o-mini', input: 'abcdefgh' });
    const queued = await sdk().responses.create({
      model: 'gpt-4o-mini',
      input: 'abcdefgh',
      background: true,
    });
    expect(queued).toMatchObject({ status: 'queued', background: true, usage: null, output: [] });
    expect((await sdk().responses.retrieve(queued.id)).status).toBe('queued');
    expect(mock.objects(ORG).pending).toEqual([queued.id]);
    expect(mock.advance()).toEqual([queued.id]);
    const done = await sdk().responses.retrieve(queued.id);
    expect(done.status).toBe('completed');
    expect(done.usage).toEqual(foreground.usage);
    expect(done.output_text).toBe(foreground.output_text);
    expect(done.completed_at).toEqual(expect.any(Number));
  });

  it('cancels background responses only', async () => {
    const queued = await sdk().responses.create({ model: 'gpt-4o-mini', input: 'x', background: true });
    expect((await sdk().responses.cancel(queued.id)).status).toBe('cancelled');
    expect(mock.advance()).toEqual([]);
    expect((await sdk().responses.retrieve(queued.id)).status).toBe('cancelled');
    const sync = await sdk().responses.create({ model: 'gpt-4o-mini', input: 'x' });
    expect((await raw('POST', `/v1/responses/${sync.id}/cancel`)).status).toBe(400);
    expect((await raw('POST', '/v1/responses', { input: 'x', background: true, store: false })).status).toBe(
      400,
    );
  });
});

describe('mock upstream conversations', () => {
  it('appends the input and output of responses to the conversation', async () => {
    const conversation = await sdk().conversations.create({
      items: [{ type: 'message', role: 'user', content: 'abcd' }],
      metadata: { topic: 'x' },
    });
    expect(conversation).toMatchObject({ object: 'conversation', metadata: { topic: 'x' } });
    expect(conversation.id).toMatch(/^conv_mock\d+$/);
    const response = await sdk().responses.create({
      model: 'gpt-4o-mini',
      input: 'efgh',
      conversation: conversation.id,
    });
    expect(response.conversation).toEqual({ id: conversation.id });
    // 4 new characters + 4 of the item already there -> 2 tokens.
    expect(response.usage?.input_tokens).toBe(2);
    const items = await sdk().conversations.items.list(conversation.id, { order: 'asc' });
    expect(items.data.map((item) => (item.type === 'message' ? item.role : item.type))).toEqual([
      'user',
      'user',
      'assistant',
    ]);
    const background = await sdk().responses.create({
      model: 'gpt-4o-mini',
      input: 'later',
      conversation: { id: conversation.id },
      background: true,
    });
    expect((await sdk().conversations.items.list(conversation.id)).data).toHaveLength(3);
    mock.advance();
    expect((await sdk().responses.retrieve(background.id)).status).toBe('completed');
    expect((await sdk().conversations.items.list(conversation.id)).data).toHaveLength(5);
  });

  it('creates, gets, deletes items and updates and deletes the conversation', async () => {
    const conversation = await sdk().conversations.create({});
    expect(conversation.metadata).toEqual({});
    const added = await sdk().conversations.items.create(conversation.id, {
      items: [{ type: 'message', role: 'user', content: 'hi' }],
    });
    const itemId = String(added.data[0]?.id);
    expect(added).toMatchObject({ object: 'list', first_id: itemId, last_id: itemId, has_more: false });
    expect(
      await sdk().conversations.items.retrieve(itemId, { conversation_id: conversation.id }),
    ).toMatchObject({
      id: itemId,
      role: 'user',
    });
    const after = await sdk().conversations.items.delete(itemId, { conversation_id: conversation.id });
    expect(after.id).toBe(conversation.id);
    expect((await raw('GET', `/v1/conversations/${conversation.id}/items/${itemId}`)).status).toBe(404);
    const updated = await sdk().conversations.update(conversation.id, { metadata: { a: 'b' } });
    expect(updated.metadata).toEqual({ a: 'b' });
    expect(await sdk().conversations.delete(conversation.id)).toEqual({
      id: conversation.id,
      object: 'conversation.deleted',
      deleted: true,
    });
    expect((await raw('POST', '/v1/responses', { input: 'x', conversation: conversation.id })).status).toBe(
      404,
    );
  });
});

describe('mock upstream stored chat completions', () => {
  const messages = [{ role: 'user' as const, content: 'Say hello please' }];

  it('stores with store: true only, lists oldest first with filters, and deletes', async () => {
    const plain = await sdk().chat.completions.create({ model: 'gpt-4o-mini', messages });
    const one = await sdk().chat.completions.create({
      model: 'gpt-4o-mini',
      messages,
      store: true,
      metadata: { team: 'red' },
    });
    const two = await sdk().chat.completions.create({ model: 'gpt-4o', messages, store: true });
    expect((await raw('GET', `/v1/chat/completions/${plain.id}`)).status).toBe(404);
    expect((await sdk().chat.completions.list()).data.map((c) => c.id)).toEqual([one.id, two.id]);
    expect((await sdk().chat.completions.list({ model: 'gpt-4o' })).data.map((c) => c.id)).toEqual([two.id]);
    expect((await sdk().chat.completions.list({ metadata: { team: 'red' } })).data.map((c) => c.id)).toEqual([
      one.id,
    ]);
    const fetched = await sdk().chat.completions.retrieve(one.id);
    expect(fetched).toMatchObject({ id: one.id, usage: one.usage, metadata: { team: 'red' } });
    const updated = await sdk().chat.completions.update(one.id, { metadata: { team: 'blue' } });
    expect(updated).toMatchObject({ metadata: { team: 'blue' } });
    const stored = await sdk().chat.completions.messages.list(one.id);
    expect(stored.data).toEqual([
      { id: `${one.id}-0`, role: 'user', content: 'Say hello please', content_parts: null },
    ]);
    expect(await sdk().chat.completions.delete(one.id)).toEqual({
      object: 'chat.completion.deleted',
      id: one.id,
      deleted: true,
    });
    expect(mock.objects(ORG).ids.chatCompletions).toEqual([two.id]);
  });

  it('stores streamed completions too', async () => {
    const stream = await sdk().chat.completions.create({
      model: 'gpt-4o-mini',
      messages,
      store: true,
      stream: true,
    });
    let id = '';
    for await (const chunk of stream) id = chunk.id;
    expect((await sdk().chat.completions.retrieve(id)).choices[0]?.message.content).toBe('Hello from mock');
  });
});
