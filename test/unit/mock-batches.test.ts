// Tests of the mock upstream's Batch API: a batch waits until advance() (or its delay), then answers each
// line with the mock's own handler (same usage as a direct call) into output and error files; expired,
// cancelled and failed batches end as OpenAI's do.
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startMockUpstream, waitFor, type MockUpstream } from '../support/mock-upstream.js';

const KEY = 'sk-batch-000000000000000000000000000000000000000001';
const OTHER = 'sk-batch-000000000000000000000000000000000000000002';

let mock: MockUpstream;

beforeAll(async () => {
  mock = await startMockUpstream({ organisations: { [KEY]: 'org-batch', [OTHER]: 'org-other' } });
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

function chatLine(customId: string, content: string, model = 'gpt-4o-mini'): string {
  return JSON.stringify({
    custom_id: customId,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model, messages: [{ role: 'user', content }] },
  });
}

interface OutputLine {
  id: string;
  custom_id: string | null;
  response: { status_code: number; request_id: string; body: Record<string, unknown> } | null;
  error: { code: string; message: string } | null;
}

async function batchOf(
  lines: string[],
  endpoint: '/v1/chat/completions' | '/v1/responses' = '/v1/chat/completions',
) {
  const file = await sdk().files.create({
    file: await toFile(Buffer.from(lines.join('\n') + '\n'), 'input.jsonl'),
    purpose: 'batch',
  });
  return sdk().batches.create({ input_file_id: file.id, endpoint, completion_window: '24h' });
}

async function fileLines(id: string | null | undefined): Promise<OutputLine[]> {
  if (typeof id !== 'string') return [];
  const text = await (await sdk().files.content(id)).text();
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as OutputLine);
}

describe('mock upstream batches', () => {
  it('waits in validating until advance(), then answers every line like a direct call', async () => {
    const batch = await batchOf([chatLine('a', 'Say hello please'), chatLine('b', 'abcdefgh')]);
    expect(batch).toMatchObject({
      status: 'validating',
      input_file_id: expect.any(String),
      model: 'gpt-4o-mini',
    });
    expect(batch.id).toMatch(/^batch_mock\d+$/);
    expect(mock.objects('org-batch').pending).toEqual([batch.id]);
    expect((await sdk().batches.retrieve(batch.id)).status).toBe('validating');

    expect(mock.advance()).toEqual([batch.id]);
    const done = await sdk().batches.retrieve(batch.id);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 2, completed: 2, failed: 0 });
    // 16 characters -> 4 prompt tokens, 8 -> 2; "Hello from mock" is 3 completion tokens each.
    expect(done.usage).toMatchObject({ input_tokens: 6, output_tokens: 6, total_tokens: 12 });
    for (const field of ['in_progress_at', 'finalizing_at', 'completed_at'] as const) {
      expect(done[field]).toEqual(expect.any(Number));
    }
    expect(done.error_file_id).toBeNull();

    const output = await fileLines(done.output_file_id);
    expect(output.map((line) => line.custom_id)).toEqual(['a', 'b']);
    const direct = await sdk().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Say hello please' }],
    });
    const first = output[0];
    expect(first?.id).toMatch(/^batch_req_mock\d+$/);
    expect(first?.error).toBeNull();
    expect(first?.response).toMatchObject({ status_code: 200, request_id: expect.stringMatching(/^req_/) });
    expect(first?.response?.body).toMatchObject({ object: 'chat.completion', usage: direct.usage });
    expect((first?.response?.body.choices as unknown[])[0]).toEqual(direct.choices[0]);

    const outputFile = await sdk().files.retrieve(String(done.output_file_id));
    expect(outputFile).toMatchObject({ purpose: 'batch_output', filename: `${batch.id}_output.jsonl` });
    expect(mock.objects('org-batch').pending).toEqual([]);
  });

  it('puts invalid JSON, foreign urls and error answers in the error file', async () => {
    const batch = await batchOf([
      chatLine('ok', 'abcd'),
      '{"custom_id": "broken",',
      JSON.stringify({ custom_id: 'nope', method: 'POST', url: '/v1/nope', body: {} }),
      chatLine('ft', 'abcd', 'ft:gpt-4o-mini:org-other::mock1'),
    ]);
    mock.advance();
    const done = await sdk().batches.retrieve(batch.id);
    expect(done.request_counts).toEqual({ total: 4, completed: 1, failed: 3 });
    expect(done.usage?.total_tokens).toBe(1 + 3);
    expect((await fileLines(done.output_file_id)).map((line) => line.custom_id)).toEqual(['ok']);
    const errors = await fileLines(done.error_file_id);
    expect(errors.map((line) => [line.custom_id, line.error?.code ?? line.response?.status_code])).toEqual([
      [null, 'invalid_json_line'],
      ['nope', 'invalid_url'],
      ['ft', 404],
    ]);
    expect((await sdk().files.retrieve(String(done.error_file_id))).purpose).toBe('batch_output');
  });

  it('runs Responses API lines with the usage of a direct call', async () => {
    const line = {
      custom_id: 'r',
      method: 'POST',
      url: '/v1/responses',
      body: { model: 'gpt-4o-mini', input: 'abcd' },
    };
    const batch = await batchOf([JSON.stringify(line)], '/v1/responses');
    mock.advance();
    const done = await sdk().batches.retrieve(batch.id);
    const [entry] = await fileLines(done.output_file_id);
    expect(entry?.response?.body).toMatchObject({ object: 'response', status: 'completed' });
    expect(entry?.response?.body.usage).toMatchObject({ input_tokens: 1, output_tokens: 3, total_tokens: 4 });
    expect(done.usage).toMatchObject({ input_tokens: 1, output_tokens: 3, total_tokens: 4 });
  });

  it('delivers the first half of the lines (rounded up) when a batch expires', async () => {
    const batch = await batchOf(['1', '2', '3', '4', '5'].map((id) => chatLine(id, 'abcd')));
    mock.advance({ batches: 'expired' });
    const done = await sdk().batches.retrieve(batch.id);
    expect(done.status).toBe('expired');
    expect(done.expired_at).toEqual(expect.any(Number));
    expect(done.request_counts).toEqual({ total: 5, completed: 3, failed: 2 });
    expect((await fileLines(done.output_file_id)).map((line) => line.custom_id)).toEqual(['1', '2', '3']);
    const errors = await fileLines(done.error_file_id);
    expect(errors.map((line) => [line.custom_id, line.error?.code])).toEqual([
      ['4', 'batch_expired'],
      ['5', 'batch_expired'],
    ]);
  });

  it('fails a batch without output when asked to', async () => {
    const batch = await batchOf([chatLine('a', 'abcd')]);
    mock.advance({ batches: 'failed' });
    const done = await sdk().batches.retrieve(batch.id);
    expect(done).toMatchObject({ status: 'failed', output_file_id: null, error_file_id: null });
    expect(done.failed_at).toEqual(expect.any(Number));
    expect(done.errors?.data?.[0]).toMatchObject({ code: expect.any(String), message: expect.any(String) });
    expect(mock.objects('org-batch').counts.files).toBe(1);
  });

  it('cancels through cancelling to cancelled, with the first half of the output', async () => {
    const batch = await batchOf(['1', '2', '3'].map((id) => chatLine(id, 'abcd')));
    const cancelling = await sdk().batches.cancel(batch.id);
    expect(cancelling.status).toBe('cancelling');
    expect(cancelling.cancelling_at).toEqual(expect.any(Number));
    expect((await sdk().batches.retrieve(batch.id)).status).toBe('cancelling');
    mock.advance({ batches: 'completed' });
    const done = await sdk().batches.retrieve(batch.id);
    expect(done.status).toBe('cancelled');
    expect(done.cancelled_at).toEqual(expect.any(Number));
    expect((await fileLines(done.output_file_id)).map((line) => line.custom_id)).toEqual(['1', '2']);
    const refused = await sdk()
      .batches.cancel(batch.id)
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(OpenAI.ConflictError);
  });

  it('keeps running from the input read at creation when the input file is deleted', async () => {
    const batch = await batchOf([chatLine('a', 'abcd')]);
    await sdk().files.delete(batch.input_file_id);
    mock.advance();
    expect((await sdk().batches.retrieve(batch.id)).request_counts?.completed).toBe(1);
  });

  it('validates the create parameters like OpenAI', async () => {
    const file = await sdk().files.create({
      file: await toFile(Buffer.from('{}\n'), 'x.jsonl'),
      purpose: 'user_data',
    });
    const create = (body: Record<string, unknown>) =>
      fetch(`${mock.url}/v1/batches`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ endpoint: '/v1/chat/completions', completion_window: '24h', ...body }),
      });
    expect((await create({ input_file_id: 'file-nope' })).status).toBe(404);
    expect((await create({ input_file_id: file.id })).status).toBe(400);
    expect((await create({ input_file_id: file.id, endpoint: '/v1/images' })).status).toBe(400);
    const missing = await create({});
    expect(await missing.json()).toMatchObject({
      error: { param: 'input_file_id', code: 'missing_required_parameter' },
    });
    expect(mock.objects('org-batch').counts.batches).toBe(0);
  });

  it('lists batches newest first with cursor paging', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await batchOf([chatLine(String(i), 'x')])).id);
    const first = await sdk().batches.list({ limit: 2 });
    expect(first.data.map((b) => b.id)).toEqual([ids[2], ids[1]]);
    expect(first.hasNextPage()).toBe(true);
    const second = await first.getNextPage();
    expect(second.data.map((b) => b.id)).toEqual([ids[0]]);
    expect(second.hasNextPage()).toBe(false);
    expect((await sdk(OTHER).batches.list()).data).toEqual([]);
  });

  it('finishes work by itself after delayMs', async () => {
    mock.setAsyncWork({ delayMs: 5 });
    const batch = await batchOf([chatLine('a', 'abcd')]);
    await waitFor(async () => (await sdk().batches.retrieve(batch.id)).status === 'completed', 2_000);
    mock.setAsyncWork('manual');
    const held = await batchOf([chatLine('b', 'abcd')]);
    mock.setAsyncWork({ delayMs: 5, batches: 'expired' });
    await waitFor(async () => (await sdk().batches.retrieve(held.id)).status === 'expired', 2_000);
  });
});
