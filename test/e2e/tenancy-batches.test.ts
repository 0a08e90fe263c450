// End-to-end: work billed when done. A batch reserves its input file's worst case at creation, is
// followed by the gateway itself (the client never polls) and billed exactly from its output file
// at the batch price; background responses likewise from their usage; both survive a restart.
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { liveBalance } from '../../src/accounts/cards.js';
import { waitFor } from '../support/mock-upstream.js';
import { updateChild } from '../support/accounts.js';
import { batchLines, fileOf, startTenants, type Tenants } from '../support/tenants.js';

let t: Tenants | undefined;
afterEach(async () => {
  await t?.stop();
  t = undefined;
});

/** gpt-4o-mini at the batch price (50 %): $0.075 / $0.30 per 1M tokens, rounded up once. */
function batchCost(prompt: number, completion: number): number {
  return Math.ceil((prompt * 150_000 + completion * 600_000) / 2_000_000);
}

/** Worst case of one input line: its bytes as prompt, its max_tokens as output, at the batch price. */
function lineWorstCase(line: string, maxTokens: number): number {
  return batchCost(Buffer.byteLength(line), maxTokens);
}

async function usageRows(tenants: Tenants, accountId: number) {
  await tenants.gw.app.writer.flush();
  return tenants.gw.app.store.db
    .selectFrom('usage_records')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('path', 'in', ['/v1/batches', '/v1/responses'])
    .execute();
}

/** Sums the usage of every successful line of a batch output file, as the client would. */
function sumOutput(jsonl: string): { prompt: number; completion: number } {
  let prompt = 0;
  let completion = 0;
  for (const line of jsonl.split('\n').filter((l) => l !== '')) {
    const { response } = JSON.parse(line) as {
      response: {
        status_code: number;
        body: { usage: { prompt_tokens: number; completion_tokens: number } };
      };
    };
    if (response.status_code !== 200) continue;
    prompt += response.body.usage.prompt_tokens;
    completion += response.body.usage.completion_tokens;
  }
  return { prompt, completion };
}

async function createBatch(tenants: Tenants, name: string, lines: string) {
  const client = tenants.client(name);
  const input = await client.files.create({ file: await fileOf(lines), purpose: 'batch' });
  return client.batches.create({
    input_file_id: input.id,
    endpoint: '/v1/chat/completions',
    completion_window: '24h',
  });
}

describe('batches', () => {
  it('reserves the worst case, follows the batch without the client polling, and bills its output exactly once', async () => {
    t = await startTenants();
    const jsonl = batchLines([
      { content: 'first question', max_tokens: 50 },
      { content: 'a second, longer question about things', max_tokens: 40 },
      { content: 'third', max_tokens: 30 },
    ]);
    const worst = jsonl.split('\n').reduce((s, l, i) => s + lineWorstCase(l, [50, 40, 30][i]!), 0);
    const alice = t.account('alice');
    const before = liveBalance(alice.cards, Date.now());
    const batch = await createBatch(t, 'alice', jsonl);
    expect(batch.status).toBe('validating');
    expect(alice.reserved).toBe(worst);
    expect(liveBalance(alice.cards, Date.now())).toBe(before);
    // A follow round before upstream finished changes nothing.
    await t.gw.app.follower.pollOnce();
    expect(alice.reserved).toBe(worst);

    t.mock.advance();
    const clientCallsBefore = t.mock.requests.length;
    await t.gw.app.follower.pollOnce();
    expect(alice.reserved).toBe(0);
    // The gateway read the batch and its output file itself: the client never polled.
    expect(t.mock.requests.length).toBeGreaterThan(clientCallsBefore);

    const done = await t.client('alice').batches.retrieve(batch.id);
    expect(done.status).toBe('completed');
    const output = await (await t.client('alice').files.content(done.output_file_id!)).text();
    const { prompt, completion } = sumOutput(output);
    expect(prompt).toBeGreaterThan(0);
    const cost = batchCost(prompt, completion);
    expect(liveBalance(alice.cards, Date.now())).toBe(before - cost);
    expect(alice.creditUsed).toBe(cost);
    const rows = await usageRows(t, alice.id);
    expect(rows.filter((r) => r.request_id === batch.id)).toMatchObject([
      {
        path: '/v1/batches',
        model: 'gpt-4o-mini',
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost,
        outcome: 'completed',
      },
    ]);
    // Another round bills nothing more.
    await t.gw.app.follower.pollOnce();
    expect(liveBalance(alice.cards, Date.now())).toBe(before - cost);
    // The output file is the owner's alone.
    await expect(t.client('bobby').files.content(done.output_file_id!)).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
  });

  it('bills partial output of an expired or cancelled batch, and nothing for a failed one', async () => {
    t = await startTenants();
    const lines = batchLines([1, 2, 3, 4].map((i) => ({ content: `question ${i}`, max_tokens: 20 })));
    const alice = t.account('alice');
    const expired = await createBatch(t, 'alice', lines);
    t.mock.advance({ batches: 'expired' });
    let balance = liveBalance(alice.cards, Date.now());
    await t.gw.app.follower.pollOnce();
    const e = await t.client('alice').batches.retrieve(expired.id);
    expect(e.status).toBe('expired');
    const partial = sumOutput(await (await t.client('alice').files.content(e.output_file_id!)).text());
    expect(liveBalance(alice.cards, Date.now())).toBe(
      balance - batchCost(partial.prompt, partial.completion),
    );

    const cancelled = await createBatch(t, 'alice', lines);
    expect((await t.client('alice').batches.cancel(cancelled.id)).status).toBe('cancelling');
    t.mock.advance();
    balance = liveBalance(alice.cards, Date.now());
    await t.gw.app.follower.pollOnce();
    const c = await t.client('alice').batches.retrieve(cancelled.id);
    expect(c.status).toBe('cancelled');
    const part = sumOutput(await (await t.client('alice').files.content(c.output_file_id!)).text());
    expect(part.prompt).toBeGreaterThan(0);
    expect(liveBalance(alice.cards, Date.now())).toBe(balance - batchCost(part.prompt, part.completion));

    const failed = await createBatch(t, 'alice', lines);
    t.mock.advance({ batches: 'failed' });
    balance = liveBalance(alice.cards, Date.now());
    await t.gw.app.follower.pollOnce();
    expect((await t.client('alice').batches.retrieve(failed.id)).status).toBe('failed');
    expect(liveBalance(alice.cards, Date.now())).toBe(balance);
    expect(alice.reserved).toBe(0);
  });

  it('refuses a batch it cannot cover, price or allow before anything runs upstream', async () => {
    t = await startTenants({ children: { alice: 50, poorly: 3 } });
    const batchesUpstream = () =>
      t!.mock.objects('org-a').counts.batches + t!.mock.objects('org-b').counts.batches;
    const expectRefused = async (name: string, lines: string, status: number, code: string) => {
      const err = await createBatch(t!, name, lines).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect([
        (err as InstanceType<typeof OpenAI.APIError>).status,
        (err as InstanceType<typeof OpenAI.APIError>).code,
      ]).toEqual([status, code]);
    };
    // $3 of credit cannot cover 2 × 10M output tokens at $0.30 per 1M.
    await expectRefused(
      'poorly',
      batchLines([
        { content: 'a', max_tokens: 10_000_000 },
        { content: 'b', max_tokens: 10_000_000 },
      ]),
      402,
      'insufficient_quota',
    );
    await expectRefused(
      'alice',
      batchLines([{ content: 'a', model: 'no-such-model' }]),
      400,
      'model_not_priced',
    );
    expect((await updateChild(t.gw, 'alice', { AllowModels: ['gpt-4o-mini'] })).status).toBe(200);
    await expectRefused('alice', batchLines([{ content: 'a', model: 'gpt-4o' }]), 403, 'model_not_allowed');
    expect(batchesUpstream()).toBe(0);
    expect(t.account('alice').reserved).toBe(0);
    expect(t.account('poorly').reserved).toBe(0);
  });

  it('keeps following open batches and background responses across a restart, and bills each once', async () => {
    t = await startTenants();
    const batch = await createBatch(t, 'alice', batchLines([{ content: 'survive', max_tokens: 10 }]));
    const bg = await t.client('alice').responses.create({
      model: 'gpt-4o-mini',
      input: 'slow work',
      background: true,
      max_output_tokens: 100,
    });
    expect(bg.status).toBe('queued');
    const reserved = t.account('alice').reserved;
    expect(reserved).toBeGreaterThan(0);
    await t.restart();
    // The new process holds the same reservations before any traffic.
    expect(t.account('alice').reserved).toBe(reserved);
    expect(t.gw.app.follower.size).toBe(2);
    t.mock.advance();
    const before = liveBalance(t.account('alice').cards, Date.now());
    await t.gw.app.follower.pollOnce();
    await t.gw.app.follower.pollOnce();
    expect(t.account('alice').reserved).toBe(0);
    expect(t.gw.app.follower.size).toBe(0);
    const resp = await t.client('alice').responses.retrieve(bg.id);
    const b = await t.client('alice').batches.retrieve(batch.id);
    const out = sumOutput(await (await t.client('alice').files.content(b.output_file_id!)).text());
    const responseCost = Math.ceil(
      (resp.usage!.input_tokens * 150_000 + resp.usage!.output_tokens * 600_000) / 1_000_000,
    );
    expect(liveBalance(t.account('alice').cards, Date.now())).toBe(
      before - batchCost(out.prompt, out.completion) - responseCost,
    );
    // Restarting again does not bill anything twice.
    await t.restart();
    expect(t.gw.app.follower.size).toBe(0);
    expect(t.account('alice').reserved).toBe(0);
    const rows = await usageRows(t, t.account('alice').id);
    expect(rows.filter((r) => r.request_id === batch.id)).toHaveLength(1);
  });
});

describe('background responses', () => {
  it('holds the worst case while running and bills the response’s own usage when it ends, without the client polling', async () => {
    t = await startTenants({ env: { FOLLOW_INTERVAL_MS: '50' }, mock: { asyncWork: { delayMs: 100 } } });
    const alice = t.account('alice');
    const before = liveBalance(alice.cards, Date.now());
    const bg = await t.client('alice').responses.create({
      model: 'gpt-4o-mini',
      input: 'think long',
      background: true,
      max_output_tokens: 500,
    });
    expect(bg.status).toBe('queued');
    expect(alice.reserved).toBeGreaterThan(0);
    expect(liveBalance(alice.cards, Date.now())).toBe(before);
    await waitFor(() => alice.reserved === 0, 5_000);
    const done = await t.client('alice').responses.retrieve(bg.id);
    expect(done.status).toBe('completed');
    const cost = Math.ceil(
      (done.usage!.input_tokens * 150_000 + done.usage!.output_tokens * 600_000) / 1_000_000,
    );
    expect(cost).toBeGreaterThan(0);
    expect(liveBalance(alice.cards, Date.now())).toBe(before - cost);
    const rows = await usageRows(t, alice.id);
    expect(rows.find((r) => r.path === '/v1/responses' && r.cost === cost)).toMatchObject({
      outcome: 'completed',
      usage_source: 'upstream',
    });
  });
});
