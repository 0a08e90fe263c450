// End-to-end: USAGE_RETENTION_DAYS deletes old request-log rows in batches and keeps the daily
// totals the dashboards read, and the dashboard still answers the same for those days.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { call, startGateway, type TestGateway } from '../support/gateway.js';
import { NO_LOG_DETAIL } from '../../src/store/batch-sink.js';

const DAY = 86_400_000;
let mock: MockUpstream;
let gw: TestGateway;

beforeAll(async () => {
  mock = await startMockUpstream();
  gw = await startGateway({
    OPENAI_API_BASE: mock.url,
    INIT_KEYS: 'sk-upstream-retention-aaaaaaaaaaaaaaaa01',
    USAGE_RETENTION_DAYS: '30',
  });
});
afterAll(async () => {
  await gw.stop();
  await mock.close();
});

it('deletes rows older than the retention in batches, keeps younger rows and every daily total', async () => {
  const root = gw.app.registry.root()!;
  const now = Date.now();
  // 4,500 rows 31..40 days old (more than two delete batches) and 10 rows 29 days old.
  const rows = [];
  for (let i = 0; i < 4_510; i++) {
    const young = i >= 4_500;
    const at = young ? now - 29 * DAY : now - 31 * DAY - (i % 10) * DAY;
    rows.push({
      request_id: `req_old_${String(i).padStart(5, '0')}`,
      account_id: root.id,
      model: 'gpt-4o-mini',
      path: '/v1/chat/completions',
      day: new Date(at).toISOString().slice(0, 10),
      prompt_tokens: 10,
      cached_tokens: 0,
      completion_tokens: 5,
      cost: 0,
      status: 200,
      outcome: 'completed',
      attempts: 1,
      usage_source: 'upstream',
      created_at: at,
      ...NO_LOG_DETAIL,
    });
  }
  for (let i = 0; i < rows.length; i += 200)
    await gw.app.store.db
      .insertInto('usage_records')
      .values(rows.slice(i, i + 200))
      .execute();
  await gw.app.store.db
    .insertInto('usage_daily')
    .values({
      account_id: root.id,
      day: new Date(now - 35 * DAY).toISOString().slice(0, 10),
      model: 'gpt-4o-mini',
      requests: 4_500,
      cost: 0,
      prompt_tokens: 45_000,
      completion_tokens: 22_500,
    })
    .execute();
  // A request now: its row is young and stays.
  await gw
    .client()
    .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
  await gw.app.writer.flush();

  expect(await gw.app.retention.run()).toBe(4_500);
  const left = await gw.app.store.db
    .selectFrom('usage_records')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirst();
  expect(Number(left?.n)).toBe(11);
  const daily = await gw.app.store.db
    .selectFrom('usage_daily')
    .select((eb) => eb.fn.sum<number>('requests').as('n'))
    .executeTakeFirst();
  expect(Number(daily?.n)).toBe(4_501);
  // The log lists what is left; a second run deletes nothing.
  const listed = (await call(gw, '/x-logs?size=1000').then((r) => r.json())) as unknown[];
  expect(listed).toHaveLength(11);
  expect(await gw.app.retention.run()).toBe(0);
});
