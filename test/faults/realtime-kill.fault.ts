// kill -9 right after a realtime client received `response.done`: the response is billed once the
// gateway restarts on the same data (its settlement was journaled before the frame left), in every
// round, with the books consistent.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.js';
import { attachMockRealtime, openRealtime, type MockRealtime } from '../support/mock-realtime.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { expectConsistent, readBooks } from './books.js';

const ROOT_KEY = 'sk-Xvs' + 'T'.repeat(25) + 'alk0123456789abcdefg';
const ROUNDS = 5;
/** TEXT_USAGE at gpt-realtime prices: 688 text + 512 cached in, 40 out, rounded up once. */
const TEXT_COST = Math.ceil((688 * 4_000_000 + 512 * 400_000 + 40 * 16_000_000) / 1_000_000);

let mock: MockUpstream | undefined;
let rt: MockRealtime | undefined;
let gw: GatewayProcess | undefined;
const dataDir = mkdtempSync(join(tmpdir(), 'proxyxai-faults-realtime-'));
afterAll(async () => {
  await gw?.crash();
  rt?.close();
  await mock?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

it('bills every realtime response whose response.done a client received before a kill -9', async () => {
  mock = await startMockUpstream();
  rt = attachMockRealtime(mock);
  const env = {
    DATA_DIR: dataDir,
    INIT_USERS: `root:root@example.com:${ROOT_KEY}`,
    INIT_KEYS: 'sk-upstream-faults-realtime-0000001',
    MASTER_KEY: 'f6'.repeat(32),
    OPENAI_API_BASE: mock.url,
    // Nothing reaches the store by a flush before the kill: only the journal can bill it.
    FLUSH_INTERVAL_MS: '60000',
    STATS_INTERVAL: '100000',
  };
  gw = await startGatewayProcess(env);
  const made = await fetch(`${gw.url}/x-users`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ROOT_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ Name: 'talker', Email: 'talker@example.com', CreditGranted: 20 }),
  });
  const key = ((await made.json()) as { User: { SecretKey: string } }).User.SecretKey;
  for (let round = 1; round <= ROUNDS; round++) {
    const session = await openRealtime(gw.url, { key });
    session.send({ type: 'response.create' });
    await session.next('response.done');
    // The instant the client holds the finished response.
    await gw.crash();
    gw = await startGatewayProcess(env);
    const books = readBooks(dataDir);
    expectConsistent(books, `after kill ${round}`);
    const talker = books.accounts.find((a) => a.name === 'talker')!;
    expect(talker.creditUsed, `round ${round}`).toBe(round * TEXT_COST);
  }
}, 300_000);
