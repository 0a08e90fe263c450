/**
 * What a batch may cost at most, reserved on the owner's balance when the batch is created: the
 * gateway reads the input file from upstream (with the key that holds it) and prices every line
 * like a request of its own — prompt bound from its bytes, its max output tokens or the
 * MAX_OUTPUT_TOKENS_CAP — at the price table's `batch_percent`. A line whose model this account
 * may not use, or that has no price, refuses the whole batch before anything runs upstream:
 * otherwise a batch would be a way around the model list and the price table.
 */
import type { Account } from '../accounts/account.js';
import { worstCaseCost } from '../billing/cost.js';
import { promptBound } from '../billing/request-bounds.js';
import { ratesAtPercent, type Micros } from '../billing/money.js';
import type { PriceTable } from '../billing/price-table.js';
import { maxOutputTokens } from '../billing/token-count.js';
import { GatewayError } from '../errors/catalogue.js';
import type { KeyPool } from '../keys/key-pool.js';
import type { Cancel } from '../upstream/cancel.js';
import { sendWithRetry, type RetryPolicy } from '../upstream/send-with-retry.js';
import type { UpstreamClient } from '../upstream/upstream-client.js';
import { forEachLine } from './body-lines.js';
import { jsonObject } from './json-object.js';
import type { ObjectRecord } from './object-registry.js';

export interface BatchPlanDeps {
  readonly pool: KeyPool;
  readonly upstream: UpstreamClient;
  readonly retry: RetryPolicy;
  readonly prices: PriceTable;
  readonly maxOutputTokensCap: number;
}

/** Endpoints the Batch API runs; all of them are billed from usage. */
export const BATCH_ENDPOINTS: ReadonlySet<string> = new Set([
  '/v1/chat/completions',
  '/v1/responses',
  '/v1/embeddings',
  '/v1/completions',
  '/v1/moderations',
]);

/** OpenAI caps a batch line well below this; a longer one is not a valid request anyway. */
const MAX_LINE_BYTES = 64 * 1024 * 1024;

export type BatchPlan =
  | { readonly ok: true; readonly reserve: Micros; readonly lines: number }
  | { readonly ok: false; readonly error: GatewayError };

export async function planBatch(
  deps: BatchPlanDeps,
  account: Account,
  inputFile: ObjectRecord,
  endpoint: unknown,
  cancel: Cancel,
): Promise<BatchPlan> {
  if (typeof endpoint !== 'string' || !BATCH_ENDPOINTS.has(endpoint)) {
    return refuse(
      new GatewayError(
        'invalid_value',
        `endpoint must be one of ${[...BATCH_ENDPOINTS].join(', ')}.`,
        'endpoint',
      ),
    );
  }
  const sent = await sendWithRetry(
    deps.pool,
    deps.upstream,
    deps.retry,
    {
      method: 'GET',
      path: `/v1/files/${encodeURIComponent(inputFile.id)}/content`,
      clientHeaders: {},
      body: undefined,
      cancel,
      affinity: { pins: [{ keyId: inputFile.keyId, group: inputFile.keyGroup }] },
    },
    () => undefined,
  );
  if (sent.kind === 'error') return refuse(sent.error);
  if (sent.kind === 'aborted') return refuse(new GatewayError('upstream_unreachable'));
  if (sent.kind === 'buffered') {
    return refuse(
      new GatewayError(
        'upstream_unreachable',
        `The batch input file could not be read (upstream ${sent.status}).`,
      ),
    );
  }
  const rates = ratesAtPercent(account.rates, deps.prices.batchPercent);
  let reserve = 0;
  let lines = 0;
  let refusal: GatewayError | undefined;
  const read = await forEachLine(sent.response.body, MAX_LINE_BYTES, (line) => {
    if (refusal !== undefined) return;
    lines++;
    const body = lineBody(line);
    // Lines upstream will reject (bad JSON, no model) cost nothing; upstream reports them.
    if (body === undefined) return;
    const model = body['model'];
    if (typeof model !== 'string' || model === '') return;
    if (account.allowModels !== null && !account.allowModels.has(model)) {
      refusal = new GatewayError(
        'model_not_allowed',
        `Line ${lines} of the batch uses the model "${model}", which this key may not use.`,
      );
      return;
    }
    const price = deps.prices.lookup(model);
    if (price === undefined) {
      refusal = new GatewayError(
        'unknown_model',
        `Line ${lines} of the batch uses the model "${model}", which has no price on this gateway.`,
        'input_file_id',
      );
      return;
    }
    const worst = worstCaseCost(
      price,
      promptBound(endpoint, { body: line, json: body }),
      maxOutputTokens(body, deps.maxOutputTokensCap),
      rates,
    );
    reserve = Math.min(reserve + worst, Number.MAX_SAFE_INTEGER);
  });
  if (refusal !== undefined) return refuse(refusal);
  if (!read.ok) {
    return refuse(
      new GatewayError('upstream_unreachable', `The batch input file could not be read: ${read.reason}.`),
    );
  }
  return { ok: true, reserve, lines };
}

function lineBody(line: Buffer): Record<string, unknown> | undefined {
  const body = jsonObject(line)?.['body'];
  return typeof body === 'object' && body !== null && !Array.isArray(body)
    ? (body as Record<string, unknown>)
    : undefined;
}

function refuse(error: GatewayError): BatchPlan {
  return { ok: false, error };
}
