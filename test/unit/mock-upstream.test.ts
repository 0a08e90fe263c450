// Tests of the mock OpenAI upstream used by the end-to-end tests: normal answers must satisfy the official
// openai SDK, and every programmable failure behaviour must look on the wire like the real thing.
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  maskKeyLikeOpenAI,
  mockEmbedding,
  mockSpeechBytes,
  startMockUpstream,
  waitFor,
  type MockUpstream,
} from '../support/mock-upstream.js';

const KEY = 'sk-abc1defghijklmnopqrstuvwxyz0123456789ABCDEFGwxyz';

let mock: MockUpstream;

beforeAll(async () => {
  mock = await startMockUpstream();
});

afterAll(async () => {
  await mock.close();
});

beforeEach(() => {
  mock.reset();
});

function sdk(apiKey = KEY): OpenAI {
  return new OpenAI({ apiKey, baseURL: `${mock.url}/v1`, maxRetries: 0, timeout: 5_000 });
}

function post(path: string, body: unknown, key = KEY, init: RequestInit = {}): Promise<Response> {
  return fetch(`${mock.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...init,
  });
}

function sseDataLines(text: string): string[] {
  return text
    .split('\n\n')
    .filter((frame) => frame.startsWith('data: '))
    .map((frame) => frame.slice('data: '.length));
}

const chatBody = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'Say hello please' }] };

describe('mock upstream: ok answers', () => {
  it('serves a loopback url without trailing slash', () => {
    expect(mock.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('answers chat completions the SDK accepts, with deterministic usage', async () => {
    const completion = await sdk().chat.completions.create(chatBody);
    expect(completion.object).toBe('chat.completion');
    expect(completion.model).toBe('gpt-4o-mini');
    expect(completion.choices[0]?.message.content).toBe('Hello from mock');
    // "Say hello please" is 16 characters -> 4 prompt tokens; "Hello from mock" is 3 words.
    expect(completion.usage).toEqual({ prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 });
  });

  it('records each request with key, method, path, headers and body', async () => {
    await sdk().chat.completions.create(chatBody);
    expect(mock.requests).toHaveLength(1);
    const [request] = mock.requests;
    expect(request?.key).toBe(KEY);
    expect(request?.method).toBe('POST');
    expect(request?.path).toBe('/v1/chat/completions');
    expect(request?.headers['content-type']).toContain('application/json');
    expect(JSON.parse(request?.body.toString('utf8') ?? '')).toMatchObject(chatBody);
    expect(request?.aborted).toBe(false);
  });

  it('streams chat chunks the SDK accepts, with the usage chunk only when asked for', async () => {
    const stream = await sdk().chat.completions.create({
      ...chatBody,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    const chunks = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
      text += chunk.choices[0]?.delta.content ?? '';
    }
    expect(text).toBe('Hello from mock');
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant');
    expect(chunks).toHaveLength(5 + 1 + 1);
    expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe('stop');
    expect(chunks.at(-1)?.choices).toEqual([]);
    expect(chunks.at(-1)?.usage).toEqual({ prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 });
    expect(chunks.slice(0, -1).every((chunk) => chunk.usage === null)).toBe(true);
  });

  it('ends a raw stream with [DONE] and omits usage when not requested', async () => {
    const res = await post('/v1/chat/completions', { ...chatBody, stream: true });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const lines = sseDataLines(await res.text());
    expect(lines.at(-1)).toBe('[DONE]');
    expect(lines).toHaveLength(5 + 1 + 1);
    for (const line of lines.slice(0, -1)) expect(line).not.toContain('usage');
  });

  it('honours setStream chunks, interval and content', async () => {
    mock.setStream({ chunks: 3, intervalMs: 40, content: 'one two three four five six' });
    const started = Date.now();
    const stream = await sdk().chat.completions.create({ ...chatBody, stream: true });
    const contents: string[] = [];
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta.content;
      if (content) contents.push(content);
    }
    expect(contents).toEqual(['one two ', 'three four ', 'five six']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(3 * 40 - 10);
    const completion = await sdk().chat.completions.create(chatBody);
    expect(completion.choices[0]?.message.content).toBe('one two three four five six');
    expect(completion.usage?.completion_tokens).toBe(6);
  });

  it('answers legacy completions, streamed or not', async () => {
    const completion = await sdk().completions.create({
      model: 'gpt-3.5-turbo-instruct',
      prompt: 'abcdefgh',
    });
    expect(completion.choices[0]?.text).toBe('Hello from mock');
    expect(completion.usage).toEqual({ prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 });
    const stream = await sdk().completions.create({
      model: 'gpt-3.5-turbo-instruct',
      prompt: 'abcdefgh',
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usageTotal = 0;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      usageTotal = chunk.usage?.total_tokens ?? usageTotal;
    }
    expect(text).toBe('Hello from mock');
    expect(usageTotal).toBe(5);
  });

  it('answers embeddings in base64 (SDK default) and as floats', async () => {
    const viaSdk = await sdk().embeddings.create({
      model: 'text-embedding-3-small',
      input: ['alpha', 'beta'],
    });
    expect(viaSdk.data.map((item) => item.embedding)).toEqual([
      mockEmbedding('alpha'),
      mockEmbedding('beta'),
    ]);
    expect(viaSdk.usage).toEqual({ prompt_tokens: 3, total_tokens: 3 });
    const sent: unknown = JSON.parse(mock.requests[0]?.body.toString('utf8') ?? '');
    expect(sent).toMatchObject({ encoding_format: 'base64' });
    const floats = await sdk().embeddings.create({
      model: 'text-embedding-3-small',
      input: 'alpha',
      encoding_format: 'float',
    });
    expect(floats.data[0]?.embedding).toEqual(mockEmbedding('alpha'));
    expect(floats.data[0]?.embedding).toHaveLength(8);
  });

  it('answers moderations and image generations', async () => {
    const moderation = await sdk().moderations.create({ input: ['a', 'b'] });
    expect(moderation.results).toHaveLength(2);
    expect(moderation.results[0]?.flagged).toBe(false);
    const images = await sdk().images.generate({ model: 'dall-e-3', prompt: 'a cat', n: 2 });
    expect(images.data).toHaveLength(2);
    expect(images.data?.[0]?.url).toMatch(/^https:\/\//);
  });

  it('parses multipart transcription uploads and reports their size and name', async () => {
    const audio = Buffer.alloc(200_001, 7);
    const transcription = await sdk().audio.transcriptions.create({
      model: 'whisper-1',
      file: await toFile(audio, 'speech.mp3', { type: 'audio/mpeg' }),
    });
    expect(transcription.text).toBe('transcribed 200001 bytes of speech.mp3');
    expect(mock.requests[0]?.headers['content-type']).toContain('multipart/form-data');
  });

  it('returns deterministic speech bytes', async () => {
    const speech = await sdk().audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'Hi there' });
    expect(speech.headers.get('content-type')).toBe('audio/mpeg');
    const bytes = Buffer.from(await speech.arrayBuffer());
    expect(bytes.length).toBe(64 * 1024);
    expect(bytes.equals(mockSpeechBytes('Hi there'))).toBe(true);
    expect(bytes.equals(mockSpeechBytes('Hi there!'))).toBe(false);
  });

  it('lists and retrieves models', async () => {
    const page = await sdk().models.list();
    expect(page.data.map((model) => model.id)).toContain('gpt-4o-mini');
    const model = await sdk().models.retrieve('gpt-4o-mini');
    expect(model).toMatchObject({ id: 'gpt-4o-mini', object: 'model' });
  });

  it('stores uploaded files and creates batches', async () => {
    const file = await sdk().files.create({
      file: await toFile(Buffer.from('{"a":1}\n'), 'batch.jsonl'),
      purpose: 'batch',
    });
    expect(file).toMatchObject({ object: 'file', bytes: 8, filename: 'batch.jsonl', purpose: 'batch' });
    const content = await sdk().files.content(file.id);
    expect(await content.text()).toBe('{"a":1}\n');
    const batch = await sdk().batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    expect(batch).toMatchObject({ object: 'batch', input_file_id: file.id, status: 'validating' });
    expect((await sdk().batches.retrieve(batch.id)).id).toBe(batch.id);
    expect((await sdk().files.list()).data).toHaveLength(1);
  });

  it('answers the Responses API, streamed or not', async () => {
    const response = await sdk().responses.create({ model: 'gpt-4o-mini', input: 'abcd' });
    expect(response.output_text).toBe('Hello from mock');
    expect(response.usage).toMatchObject({ input_tokens: 1, output_tokens: 3, total_tokens: 4 });
    const stream = sdk().responses.stream({ model: 'gpt-4o-mini', input: 'abcd' });
    let deltas = '';
    stream.on('response.output_text.delta', (event) => {
      deltas += event.delta;
    });
    const final = await stream.finalResponse();
    expect(deltas).toBe('Hello from mock');
    expect(final.output_text).toBe('Hello from mock');
    expect(final.usage?.total_tokens).toBe(4);
  });

  it('echoes other /v1 paths and 404s elsewhere', async () => {
    // /v1/assistants is modelled now; /v1/evals is not.
    const echo = await post('/v1/evals/x?limit=2&after=a', { hello: 'world' });
    expect(echo.status).toBe(200);
    expect(await echo.json()).toEqual({
      echo: { method: 'POST', path: '/v1/evals/x', query: 'limit=2&after=a', bodyBytes: 17 },
    });
    expect(mock.requests[0]?.path).toBe('/v1/evals/x?limit=2&after=a');
    const missing = await fetch(`${mock.url}/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({
      error: { message: 'Invalid URL (GET /nope)', type: 'invalid_request_error', param: null, code: null },
    });
  });

  it('rejects malformed JSON with an OpenAI-shaped 400', async () => {
    const res = await post('/v1/chat/completions', '{"model": ');
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { type: string; code: unknown } };
    expect(body.error.type).toBe('invalid_request_error');
  });
});

describe('mock upstream: failure behaviours', () => {
  it('echoes a partly masked key on invalid-key, like OpenAI', async () => {
    mock.setKey(KEY, { kind: 'invalid-key' });
    const res = await post('/v1/chat/completions', chatBody);
    expect(res.status).toBe(401);
    const body = (await res.json()) as { error: { message: string; code: string; type: string } };
    expect(body.error.code).toBe('invalid_api_key');
    expect(body.error.type).toBe('invalid_request_error');
    expect(body.error.message).toContain('Incorrect API key provided: sk-abc1****');
    expect(body.error.message).toContain(`${maskKeyLikeOpenAI(KEY)}. You can find your API key`);
    expect(maskKeyLikeOpenAI(KEY)).toMatch(/^sk-abc1\*+wxyz$/);
    await expect(sdk().models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it('applies behaviours per key, with a default for other keys', async () => {
    mock.setKey('sk-dead', { kind: 'deactivated' });
    mock.setDefault({ kind: 'error503' });
    const dead = await post('/v1/chat/completions', chatBody, 'sk-dead');
    expect(dead.status).toBe(401);
    expect(await dead.json()).toMatchObject({ error: { code: 'account_deactivated' } });
    const other = await post('/v1/chat/completions', chatBody, 'sk-other');
    expect(other.status).toBe(503);
    mock.setKey('sk-other', { kind: 'ok' });
    expect((await post('/v1/chat/completions', chatBody, 'sk-other')).status).toBe(200);
    mock.reset();
    expect((await post('/v1/chat/completions', chatBody, 'sk-dead')).status).toBe(200);
    expect(mock.requests).toHaveLength(1);
  });

  it('rate-limits with Retry-After and reports insufficient quota', async () => {
    mock.setKey('sk-rl', { kind: 'rate-limited', retryAfterSec: 7 });
    mock.setKey('sk-quota', { kind: 'insufficient-quota' });
    const limited = await post('/v1/chat/completions', chatBody, 'sk-rl');
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('7');
    expect(await limited.json()).toMatchObject({ error: { type: 'requests', code: 'rate_limit_exceeded' } });
    const quota = await post('/v1/chat/completions', chatBody, 'sk-quota');
    expect(quota.status).toBe(429);
    expect(quota.headers.get('retry-after')).toBeNull();
    expect(await quota.json()).toMatchObject({
      error: { type: 'insufficient_quota', code: 'insufficient_quota' },
    });
  });

  it('serves 500s and arbitrary canned replies', async () => {
    mock.setKey('sk-500', { kind: 'error500' });
    expect((await post('/v1/embeddings', {}, 'sk-500')).status).toBe(500);
    mock.setKey('sk-canned', {
      kind: 'status',
      status: 418,
      body: { tea: true },
      headers: { 'X-Teapot': 'yes' },
    });
    const canned = await post('/v1/models', {}, 'sk-canned');
    expect(canned.status).toBe(418);
    expect(canned.headers.get('x-teapot')).toBe('yes');
    expect(await canned.json()).toEqual({ tea: true });
  });

  it('hangs until the client aborts, and records the abort promptly', async () => {
    mock.setDefault({ kind: 'hang' });
    const controller = new AbortController();
    const pending = post('/v1/chat/completions', chatBody, KEY, { signal: controller.signal });
    const request = await waitFor(() => mock.requests[0]?.body.length && mock.requests[0]);
    expect(request.aborted).toBe(false);
    const abortedAt = Date.now();
    controller.abort();
    await expect(pending).rejects.toThrow();
    await waitFor(() => request.aborted, 500);
    expect(request.abortedAt).toBeGreaterThanOrEqual(abortedAt);
    expect((request.abortedAt ?? Infinity) - abortedAt).toBeLessThan(500);
  });

  it('records a client abort in the middle of a stream', async () => {
    mock.setStream({ chunks: 50, intervalMs: 20 });
    const controller = new AbortController();
    const res = await post('/v1/chat/completions', { ...chatBody, stream: true }, KEY, {
      signal: controller.signal,
    });
    const reader = res.body?.getReader();
    await reader?.read();
    controller.abort();
    const request = mock.requests[0];
    await waitFor(() => request?.aborted, 500);
  });

  it('drops a stream after N chunks', async () => {
    mock.setKey(KEY, { kind: 'drop-mid-stream', afterChunks: 2 });
    const stream = await sdk().chat.completions.create({ ...chatBody, stream: true });
    const received: string[] = [];
    const consume = async (): Promise<void> => {
      for await (const chunk of stream) received.push(chunk.choices[0]?.delta.content ?? '');
    };
    await expect(consume()).rejects.toThrow();
    expect(received).toHaveLength(2);
    expect(mock.requests[0]?.aborted).toBe(false);
  });

  it('drops a non-stream body halfway', async () => {
    mock.setKey(KEY, { kind: 'drop-mid-stream', afterChunks: 0 });
    const res = await post('/v1/audio/speech', { model: 'tts-1', voice: 'alloy', input: 'x' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(64 * 1024));
    await expect(res.arrayBuffer()).rejects.toThrow();
    // The SDK surfaces a body cut short after the headers as undici's `TypeError: terminated`.
    await expect(sdk().chat.completions.create(chatBody)).rejects.toThrow(/terminated/);
  });

  it('answers normally after a delay when slow', async () => {
    mock.setKey(KEY, { kind: 'slow', delayMs: 150 });
    const started = Date.now();
    const completion = await sdk().chat.completions.create(chatBody);
    expect(completion.choices[0]?.message.content).toBe('Hello from mock');
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  it('waitFor rejects after its timeout', async () => {
    await expect(waitFor(() => false, 50)).rejects.toThrow(/within 50 ms/);
  });

  it('close() ends hanging connections', async () => {
    const other = await startMockUpstream({ defaultBehaviour: { kind: 'hang' } });
    const pending = fetch(`${other.url}/v1/models`);
    await waitFor(() => other.requests.length === 1);
    await other.close();
    await expect(pending).rejects.toThrow();
    expect(other.requests[0]?.aborted).toBe(false);
  });
});
