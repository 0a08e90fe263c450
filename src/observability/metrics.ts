/**
 * Prometheus metrics on a registry owned by the app (no global default registry), exposed at
 * GET /metrics. Labels never carry keys or account names, only routes, statuses and outcomes.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  readonly registry: Registry;
  readonly requests: Counter<'kind' | 'status'>;
  readonly upstreamAttempts: Counter<'outcome'>;
  readonly upstreamKeys: Gauge<'status'>;
  readonly duration: Histogram<'kind'>;
  readonly charged: Counter;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'proxyxai_' });
  return {
    registry,
    requests: new Counter({
      name: 'proxyxai_requests_total',
      help: 'Requests answered by the gateway',
      labelNames: ['kind', 'status'],
      registers: [registry],
    }),
    upstreamAttempts: new Counter({
      name: 'proxyxai_upstream_attempts_total',
      help: 'Upstream attempts by classified outcome',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    upstreamKeys: new Gauge({
      name: 'proxyxai_upstream_keys',
      help: 'Upstream keys in the pool by status',
      labelNames: ['status'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'proxyxai_request_duration_seconds',
      help: 'Time from request start to the last byte sent',
      labelNames: ['kind'],
      buckets: [0.005, 0.025, 0.1, 0.5, 1, 2.5, 10, 30, 120],
      registers: [registry],
    }),
    charged: new Counter({
      name: 'proxyxai_charged_micros_total',
      help: 'Micro-dollars charged to accounts for usage',
      registers: [registry],
    }),
  };
}
