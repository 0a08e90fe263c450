// Objects over several instances, as real processes: an object created through one instance is
// found (by its owner only) on another right after the answer, a deletion likewise, a chain of
// previous_response_id calls hops between instances and stays in the organisation that holds it,
// and a batch whose instance is killed -9 is followed by a survivor and billed exactly once.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.js';
import { ROOT_KEY, TEST_STORE } from '../support/gateway.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { batchLines, KEY_A, KEY_B } from '../support/tenants.js';
import { createTestDatabase, postgresTestRun, type TestDatabase } from '../support/test-databases.js';

// Once per run (the sqlite project), and only with a PostgreSQL server.
const enabled = TEST_STORE === 'sqlite' && postgresTestRun() !== undefined;

let mock: MockUpstream;
let redis: RedisServer;
let db: TestDatabase;
let sql: pg.Pool;
let env: Record<string, string>;
let dataDir: string;
let gws: GatewayProcess[] = [];
const keys: Record<string, string> = {};

function client(gw: GatewayProcess, name: string): OpenAI {
  return new OpenAI({ apiKey: keys[name]!, baseURL: `${gw.url}/v1`, maxRetries: 0 });
}

async function createChild(gw: GatewayProcess, name: string, credit: number): Promise<void> {
  const r = await fetch(`${gw.url}/x-users`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ROOT_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ Name: name, Email: `${name}@example.com`, CreditGranted: credit }),
  });
  const body = (await r.json()) as { User?: { SecretKey?: string } };
  expect(r.status, JSON.stringify(body)).toBe(200);
  keys[name] = body.User!.SecretKey!;
}

async function statusOf(p: Promise<unknown>): Promise<number> {
  return p.then(
    () => 200,
    (e: unknown) => (e instanceof OpenAI.APIError ? (e.status ?? 0) : -1),
  );
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe.runIf(enabled)('objects over two gateway processes', () => {
  beforeAll(async () => {
    mock = await startMockUpstream({ organisations: { [KEY_A]: 'org-a', [KEY_B]: 'org-b' } });
    redis = await startRedisServer();
    db = await createTestDatabase();
    sql = new pg.Pool({ connectionString: db.dsn, options: `-c search_path=${db.schema}`, max: 2 });
    dataDir = mkdtempSync(join(tmpdir(), 'proxyxai-objects-'));
    env = {
      DATA_DIR: dataDir,
      POSTGRES_DSN: db.dsn,
      REDIS_ADDR: redis.addr,
      MASTER_KEY: 'b3'.repeat(32),
      INIT_USERS: `root:root@example.com:${ROOT_KEY}`,
      INIT_KEYS: `${KEY_A},${KEY_B}`,
      OPENAI_API_BASE: mock.url,
      FLUSH_INTERVAL_MS: '50',
      FOLLOW_INTERVAL_MS: '200',
    };
    gws = [await startGatewayProcess(env)];
    gws.push(await startGatewayProcess(env));
    await createChild(gws[0]!, 'alice', 50);
    await createChild(gws[1]!, 'bobby', 50);
  }, 120_000);

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail')
      for (const g of gws) console.log(`--- ${g.url}\n${g.logs.slice(-15).join('\n')}`);
  });

  afterAll(async () => {
    await Promise.all(gws.map((g) => g.stop()));
    await sql?.end();
    await redis?.stop();
    await mock?.close();
    if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
  }, 60_000);

  it('a file made through one instance is its owner’s on the other at once; a deletion too', async () => {
    for (let i = 0; i < 4; i++) {
      const made = await client(gws[i % 2]!, 'alice').files.create({
        file: await toFile(Buffer.from(`content ${i}`), 'notes.txt'),
        purpose: 'user_data',
      });
      const other = gws[(i + 1) % 2]!;
      // Right after the answer, on the other instance: found, by its owner only.
      expect((await client(other, 'alice').files.retrieve(made.id)).id).toBe(made.id);
      expect(await (await client(other, 'alice').files.content(made.id)).text()).toBe(`content ${i}`);
      expect(await statusOf(client(other, 'bobby').files.retrieve(made.id))).toBe(404);
      const listed = await client(other, 'alice').files.list();
      expect(listed.data.map((f) => f.id)).toContain(made.id);
      const bobbyList = await client(other, 'bobby').files.list();
      expect(bobbyList.data.map((f) => f.id)).not.toContain(made.id);
      // Deleted through the other instance: gone on the first right after.
      expect((await client(other, 'alice').files.delete(made.id)).deleted).toBe(true);
      expect(await statusOf(client(gws[i % 2]!, 'alice').files.retrieve(made.id))).toBe(404);
    }
  }, 60_000);

  it('a previous_response_id chain hopping between instances stays in the organisation holding it', async () => {
    const first = await client(gws[0]!, 'alice').responses.create({ model: 'gpt-4o-mini', input: 'start' });
    const org = mock.organisationOf(mock.requests.at(-1)?.key ?? null);
    let prev = first.id;
    for (let i = 0; i < 8; i++) {
      const gw = gws[(i + 1) % 2]!;
      let id: string;
      if (i % 2 === 0) {
        // Streamed: the next instance must know the response as soon as the stream ended.
        const stream = await client(gw, 'alice').responses.create({
          model: 'gpt-4o-mini',
          input: `step ${i}`,
          previous_response_id: prev,
          stream: true,
        });
        let done: string | undefined;
        for await (const event of stream) if (event.type === 'response.completed') done = event.response.id;
        id = done!;
      } else {
        id = (
          await client(gw, 'alice').responses.create({
            model: 'gpt-4o-mini',
            input: `step ${i}`,
            previous_response_id: prev,
          })
        ).id;
      }
      expect(mock.organisationOf(mock.requests.at(-1)?.key ?? null)).toBe(org);
      // Never another tenant's, on either instance.
      expect(await statusOf(client(gws[i % 2]!, 'bobby').responses.retrieve(id))).toBe(404);
      prev = id;
    }
  }, 60_000);

  it('a batch whose instance is killed -9 is followed by the survivor and billed exactly once', async () => {
    await createChild(gws[0]!, 'batcher', 20);
    const creator = gws[0]!;
    const owner = client(creator, 'batcher');
    const input = await owner.files.create({
      file: await toFile(
        Buffer.from(
          batchLines([
            { content: 'one', max_tokens: 4_000_000 },
            { content: 'two', max_tokens: 4_000_000 },
          ]),
        ),
        'batch.jsonl',
      ),
      purpose: 'batch',
    });
    const batch = await owner.batches.create({
      input_file_id: input.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const creatorId = ((await (await fetch(`${creator.url}/readyz`)).json()) as { instance: string })
      .instance;
    const row = await sql.query<{ follow: string; follow_owner: string }>(
      'select follow, follow_owner from objects where id = $1',
      [batch.id],
    );
    expect(row.rows[0]).toEqual({ follow: 'open', follow_owner: creatorId });

    await creator.crash();
    // The survivor takes the follow over (the heartbeat's death handler), then upstream finishes.
    const survivor = gws[1]!;
    const survivorId = ((await (await fetch(`${survivor.url}/readyz`)).json()) as { instance: string })
      .instance;
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = await sql.query<{ follow_owner: string }>('select follow_owner from objects where id = $1', [
        batch.id,
      ]);
      if (r.rows[0]?.follow_owner === survivorId) break;
      if (Date.now() > deadline) throw new Error('the survivor did not take the batch over');
      await sleep(100);
    }
    mock.advance();
    for (;;) {
      const r = await sql.query<{ follow: string }>('select follow from objects where id = $1', [batch.id]);
      if (r.rows[0]?.follow === 'done') break;
      if (Date.now() > deadline + 10_000) throw new Error('the batch was never settled');
      await sleep(100);
    }
    await sleep(300);
    const usage = await sql.query<{ cost: string; n: string }>(
      `select coalesce(sum(u.cost), 0) as cost, count(*) as n from usage_records u
       join accounts a on a.id = u.account_id where a.name = 'batcher' and u.request_id = $1`,
      [batch.id],
    );
    expect(Number(usage.rows[0]!.n)).toBe(1);
    expect(Number(usage.rows[0]!.cost)).toBeGreaterThan(0);
    const a = await sql.query<{ credit_used: string; id: number }>(
      `select id, credit_used from accounts where name = 'batcher'`,
    );
    const ledger = await sql.query<{ v: string }>(
      'select coalesce(sum(amount), 0) as v from ledger where account_id = $1',
      [a.rows[0]!.id],
    );
    const balance = await sql.query<{ v: string }>(
      'select coalesce(sum(balance), 0) as v from credit_cards where account_id = $1',
      [a.rows[0]!.id],
    );
    expect(Number(a.rows[0]!.credit_used) + Number(balance.rows[0]!.v)).toBe(20_000_000);
    expect(Number(ledger.rows[0]!.v)).toBe(Number(balance.rows[0]!.v));
    // The results are the owner's, through the survivor.
    const done = await client(survivor, 'batcher').batches.retrieve(batch.id);
    expect(done.status).toBe('completed');
    const output = await (await client(survivor, 'batcher').files.content(done.output_file_id!)).text();
    expect(output).toContain('req-0');
    // Billed exactly what the output says, at gpt-4o-mini's batch price ($0.075 / $0.30 per 1M).
    let prompt = 0;
    let completion = 0;
    for (const line of output.split('\n').filter((l) => l !== '')) {
      const u = (JSON.parse(line) as { response: { body: { usage: Record<string, number> } } }).response.body
        .usage;
      prompt += u['prompt_tokens']!;
      completion += u['completion_tokens']!;
    }
    expect(Number(usage.rows[0]!.cost)).toBe(
      Math.ceil((prompt * 150_000 + completion * 600_000) / 2_000_000),
    );
    expect(await statusOf(client(survivor, 'alice').batches.retrieve(batch.id))).toBe(404);
    gws[0] = await startGatewayProcess(env);
  }, 90_000);
});
