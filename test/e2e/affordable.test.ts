// End-to-end: an account with little credit is refused only what it really cannot pay for. A burst
// of 600 concurrent chat requests on $2: admission reserves the byte bound of each prompt while it
// fits, and counts the prompts with the real tokenizer (those in flight and the new one) before it
// refuses, so the burst gets about as many requests as $2 really affords, never below zero.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { liveBalance } from '../../src/accounts/cards.js';
import { computeCost, worstCaseCost } from '../../src/billing/cost.js';
import { exactPromptBound } from '../../src/billing/exact-prompt.js';
import { RATE_ONE } from '../../src/billing/money.js';
import { loadPriceTable, type ModelPrice } from '../../src/billing/price-table.js';
import { createChild, loadedByName } from '../support/accounts.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { promptTokens, textChars } from '../support/mock-http.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';

const K = 'sk-upstream-affordable-aaaaaaaaaaa0001';
const prices = loadPriceTable(new URL('../../config/prices.json', import.meta.url).pathname);
// Long enough that no admitted request is answered (and settled) before the burst is decided, even
// on a loaded machine (alone, the 600 are decided in under 2 s).
const UPSTREAM_DELAY_MS = 8_000;
const REQUESTS = 600;
const MAX_TOKENS = 16;

let mock: MockUpstream;
let gw: TestGateway;

beforeAll(async () => {
  mock = await startMockUpstream();
  gw = await startGateway({ OPENAI_API_BASE: mock.url, INIT_KEYS: K });
});
afterAll(async () => {
  await gw.stop();
  await mock.close();
});

/**
 * 16.5k characters of plain English in three-letter words: each word is one token with its space,
 * so the mock upstream's count (4 characters per token) never bills more than the real tokenizer
 * counts; with longer words it would bill above any real count, and the reservation could not
 * bound it.
 */
function english(chars: number): string {
  const words =
    'the cat dog sat ran on a mat and to sun sea far but not for big red hot day way see you can'.split(' ');
  let s = 11;
  let text = '';
  for (let i = 1; text.length < chars; i++) {
    s = (s * 16807) % 2147483647;
    text += words[s % words.length] + (i % 9 === 0 ? '. ' : ' ');
  }
  return text.slice(0, chars);
}

describe('a burst on a small balance', () => {
  it('admits about what $2 affords (not a quarter of it), never below zero, ledger exact', async () => {
    const key = await createChild(gw, 'small', 2);
    const account = loadedByName(gw.app, 'small');
    if (account === undefined) throw new Error('no account');
    const json = {
      model: 'gpt-4o',
      max_tokens: MAX_TOKENS,
      messages: [{ role: 'user', content: english(16_500) }],
    };
    const body = JSON.stringify(json);
    const bytes = Buffer.byteLength(body);
    const price = prices.lookup('gpt-4o') as ModelPrice;
    const bound = exactPromptBound('/v1/chat/completions', { body: Buffer.from(body), json }) as number;
    const byteCase = worstCaseCost(price, bytes, MAX_TOKENS, RATE_ONE);
    const exactCase = worstCaseCost(price, bound, MAX_TOKENS, RATE_ONE);
    // Above the $1 floor, $1 of reservations fits, and one more request while $1 is left. The byte
    // bound ($0.0416 a request) admitted 25 of the 600 (measured before this change); the exact
    // worst case ($0.0120) admits 84, three times as many.
    const byteBoundAdmits = Math.floor(1_000_000 / byteCase) + 1;
    const affordable = Math.floor(1_000_000 / exactCase) + 1;
    expect(byteBoundAdmits).toBe(25);
    expect(affordable).toBe(84);

    mock.setDefault({ kind: 'slow', delayMs: UPSTREAM_DELAY_MS });
    let lowest = Infinity;
    const watch = setInterval(() => {
      lowest = Math.min(lowest, liveBalance(account.cards, Date.now()) - account.reserved);
    }, 2);
    // Settlements so far (refusals are not counted): none may happen before the last refusal.
    const settledBefore = account.requests;
    let settledAtRefusals = 0;
    const statuses = await Promise.all(
      Array.from({ length: REQUESTS }, () =>
        fetch(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body,
        }).then(async (r) => {
          await r.arrayBuffer();
          if (r.status === 402)
            settledAtRefusals = Math.max(settledAtRefusals, account.requests - settledBefore);
          return r.status;
        }),
      ),
    );
    clearInterval(watch);
    mock.setDefault({ kind: 'ok' });

    // Every refusal was decided before any admitted request settled: the burst was one.
    expect(settledAtRefusals).toBe(0);
    const ok = statuses.filter((s) => s === 200).length;
    expect(statuses.filter((s) => s === 402).length).toBe(REQUESTS - ok);
    expect(ok).toBe(affordable);
    expect(ok).toBeGreaterThan(3 * byteBoundAdmits);
    expect(lowest).toBeGreaterThanOrEqual(0);

    await gw.app.writer.flush();
    const balance = liveBalance(account.cards, Date.now());
    expect(balance).toBeGreaterThanOrEqual(0);
    expect(account.reserved).toBe(0);
    expect(account.creditUsed + balance).toBe(2_000_000);
    const db = gw.app.store.db;
    const ledger = await db
      .selectFrom('ledger')
      .select('amount')
      .where('account_id', '=', account.id)
      .execute();
    expect(ledger.reduce((s, l) => s + Number(l.amount), 0)).toBe(balance);
    const rows = await db
      .selectFrom('usage_records')
      .selectAll()
      .where('account_id', '=', account.id)
      .where('outcome', '=', 'completed')
      .execute();
    expect(rows).toHaveLength(ok);
    expect(rows.reduce((s, r) => s + Number(r.cost), 0)).toBe(account.creditUsed);
    // Each request paid all of its usage (nothing absorbed at the floor of zero), and what upstream
    // billed as prompt stayed within the exact bound it was admitted with.
    expect(rows[0]?.prompt_tokens).toBe(promptTokens(textChars(json.messages)));
    for (const r of rows) {
      expect(r.prompt_tokens).toBeLessThanOrEqual(bound);
      const usage = { promptTokens: r.prompt_tokens, cachedTokens: 0, completionTokens: r.completion_tokens };
      expect(Number(r.cost)).toBe(computeCost(price, usage, RATE_ONE));
    }
  });
});
