// Operator metrics: label values stay in small closed sets whatever clients send, histograms
// counted in plain numbers print as Prometheus histograms, and the METRICS_TOKEN check.
import { describe, expect, it } from 'vitest';
import { PriceTable, type ModelPrice } from '../../src/billing/price-table.js';
import { keyLabel, modelLabel, outcomeLabel } from '../../src/observability/metric-labels.js';
import { createMetrics, metricsRefusal } from '../../src/observability/metrics.js';
import { Buckets } from '../../src/observability/scrape-histogram.js';
import type { UsageRow } from '../../src/store/batch-sink.js';

const price = (model: string): [string, ModelPrice] => [
  model,
  { model, inputMicrosPerM: 1_000_000, outputMicrosPerM: 2_000_000 },
];
const table = new PriceTable([price('gpt-4o'), price('gpt-4o-mini'), price('ft:gpt-4o-mini-2024-07-18')]);
const withDefault = new PriceTable([price('gpt-4o')], {
  defaultPrice: { inputMicrosPerM: 1, outputMicrosPerM: 1 },
});

function row(over: Partial<UsageRow>): UsageRow {
  return {
    request_id: 'req_1',
    account_id: 7,
    model: 'gpt-4o',
    path: '/v1/chat/completions',
    day: '2025-01-01',
    prompt_tokens: 10,
    cached_tokens: 4,
    completion_tokens: 5,
    cost: 123,
    status: 200,
    outcome: 'completed',
    attempts: 1,
    usage_source: 'upstream',
    created_at: 0,
    stream: 0,
    reasoning_tokens: 0,
    images: 0,
    audio_ms: 0,
    characters: 0,
    rates: 1_000_000,
    latency_ms: 300,
    ttfb_ms: 200,
    client_ip: '127.0.0.1',
    error_code: null,
    ...over,
  };
}

describe('model label', () => {
  it('keeps models listed in the price table, by the entry that priced them', () => {
    expect(modelLabel(table, 'gpt-4o')).toBe('gpt-4o');
    expect(modelLabel(table, 'GPT-4o-mini')).toBe('gpt-4o-mini');
    expect(modelLabel(table, 'gpt-4o-2024-08-06')).toBe('gpt-4o');
    expect(modelLabel(table, 'ft:gpt-4o-mini-2024-07-18:acme-corp:alice:abc123')).toBe(
      'ft:gpt-4o-mini-2024-07-18',
    );
  });

  it('folds unlisted models into `other`, and no model into `none`', () => {
    expect(modelLabel(table, 'llama-3-70b')).toBe('other');
    expect(modelLabel(withDefault, 'llama-3-70b')).toBe('other');
    expect(modelLabel(table, 'ft:unknown-base:acme:x')).toBe('other');
    expect(modelLabel(table, '')).toBe('none');
    const labels = new Set(Array.from({ length: 1000 }, (_, i) => modelLabel(withDefault, `random-${i}`)));
    expect([...labels]).toEqual(['other']);
  });
});

describe('outcome and key labels', () => {
  it('keeps the known outcomes and folds anything else', () => {
    for (const o of ['completed', 'client-gone', 'upstream-error', 'refused', 'expired'])
      expect(outcomeLabel(o)).toBe(o);
    expect(outcomeLabel('something-new')).toBe('other');
    expect(outcomeLabel('constructor')).toBe('other');
  });

  it('shows a key by its last four characters only', () => {
    expect(keyLabel('wxyz')).toBe('...wxyz');
  });
});

describe('histograms counted in plain numbers', () => {
  it('buckets are cumulative, with everything above the last bound only in the count', () => {
    const b = new Buckets([0.1, 1, 10]);
    for (const v of [0.05, 0.1, 0.5, 5, 50]) b.observe(v);
    expect(b.cumulative()).toEqual([2, 3, 4]);
    expect(b.count).toBe(5);
    expect(b.sum).toBeCloseTo(55.65);
  });

  it('print as Prometheus histograms at scrape time', async () => {
    const m = createMetrics();
    m.observeUsage(row({ ttfb_ms: 200, stream: 1 }), 'gpt-4o');
    m.observeUsage(row({ ttfb_ms: 200_000, stream: 1 }), 'gpt-4o');
    m.observeUsage(row({ ttfb_ms: null, outcome: 'refused', cost: 0 }), 'none');
    m.observeAttempt({ id: 3, last4: 'abcd' }, { kind: 'ok' }, 40);
    m.observeAttempt({ id: 3, last4: 'abcd' }, { kind: 'transient', reason: '500' }, 1_500);
    m.observeAttempt({ id: 3, last4: 'abcd' }, { kind: 'client-error' }, 20);
    const text = await m.registry.metrics();
    expect(text).toContain('proxyxai_ttfb_seconds_bucket{stream="true",le="0.25"} 1');
    expect(text).toContain('proxyxai_ttfb_seconds_bucket{stream="true",le="120"} 1');
    expect(text).toContain('proxyxai_ttfb_seconds_bucket{stream="true",le="+Inf"} 2');
    expect(text).toContain('proxyxai_ttfb_seconds_count{stream="true"} 2');
    expect(text).toContain('proxyxai_ttfb_seconds_count{stream="false"} 0');
    expect(text).toContain('# TYPE proxyxai_ttfb_seconds histogram');
    expect(text).toContain('proxyxai_usage_requests_total{model="gpt-4o",outcome="completed"} 2');
    expect(text).toContain('proxyxai_usage_requests_total{model="none",outcome="refused"} 1');
    expect(text).toContain('proxyxai_usage_tokens_total{model="gpt-4o",outcome="completed",type="cached"} 8');
    expect(text).toContain('proxyxai_usage_spend_micros_total{model="gpt-4o",outcome="completed"} 246');
    expect(text).toContain('proxyxai_upstream_key_attempts_total{key_id="3",key="...abcd",outcome="ok"} 1');
    expect(text).toContain('proxyxai_upstream_key_failures_total{key_id="3",key="...abcd"} 1');
    expect(text).toContain(
      'proxyxai_upstream_key_latency_seconds_bucket{key_id="3",key="...abcd",le="0.05"} 2',
    );
    expect(text).toContain('proxyxai_upstream_key_latency_seconds_sum{key_id="3",key="...abcd"} 1.56');
    // A second scrape prints the same totals (copied, not added again).
    expect(await m.registry.metrics()).toContain(
      'proxyxai_usage_requests_total{model="gpt-4o",outcome="completed"} 2',
    );
  });
});

describe('METRICS_TOKEN', () => {
  it('serves everyone without a token, and only the Bearer token with one', () => {
    expect(metricsRefusal(undefined, undefined)).toBeUndefined();
    expect(metricsRefusal('s3cret', 'Bearer s3cret')).toBeUndefined();
    expect(metricsRefusal('s3cret', 'bearer  s3cret')).toBeUndefined();
    for (const header of [
      undefined,
      '',
      'Bearer',
      'Bearer s3cre',
      'Bearer s3cret2',
      's3cret',
      'Basic s3cret',
    ]) {
      const refusal = metricsRefusal('s3cret', header);
      expect(refusal?.status, String(header)).toBe(401);
      expect(refusal?.headers['www-authenticate']).toMatch(/^Bearer/);
    }
  });
});
