// End-to-end: graceful shutdown lets in-flight streams finish, refuses new work, then exits.
import { expect, it } from 'vitest';
import { startMockUpstream } from '../support/mock-upstream.js';
import { startGateway, ROOT_KEY } from '../support/gateway.js';

it('lets an in-flight stream finish during stop() and then closes', async () => {
  const mock = await startMockUpstream();
  const gw = await startGateway({
    OPENAI_API_BASE: mock.url,
    INIT_KEYS: 'sk-upstream-shutdown-000000000001',
    DRAIN_TIMEOUT_MS: '5000',
  });
  mock.setStream({ chunks: 10, intervalMs: 50, content: 'a b c d e f g h i j' });
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ROOT_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream: true }),
  });
  const reader = res.body!.getReader();
  await reader.read();
  const stopped = gw.stop();
  let text = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString();
  }
  await stopped;
  expect(text).toContain('[DONE]');
  await expect(fetch(`${gw.url}/healthz`)).rejects.toThrow();
  // Settled usage was flushed before exit.
  const gw2 = await gw.restart();
  const rows = await gw2.app.store.db.selectFrom('usage_records').selectAll().execute();
  expect(rows).toHaveLength(1);
  expect(rows[0]?.outcome).toBe('completed');
  await gw2.stop();
  await mock.close();
});
