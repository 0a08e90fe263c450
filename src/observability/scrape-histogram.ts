/**
 * Histograms counted in plain numbers and handed to prom-client only when /metrics is scraped
 * (see metrics.ts for why: prom-client hashes the labels on every `observe`). prom-client has no
 * way to set a histogram's buckets, so `ScrapeHistogram` is a prom-client Histogram whose `get`
 * returns the buckets of `Buckets` series instead of its own (empty) ones: the registry prints it
 * like any other histogram (`_bucket{le}`, `_sum`, `_count`).
 */
import { Histogram, type Registry } from 'prom-client';

/** One histogram series: counts per bucket (not cumulative), sum and count. */
export class Buckets {
  private readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = bounds.map(() => 0);
  }

  observe(value: number): void {
    this.sum += value;
    this.count++;
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= (bounds[i] ?? Infinity)) {
        this.counts[i] = (this.counts[i] ?? 0) + 1;
        return;
      }
    }
  }

  /** Observations at or below each bound (Prometheus buckets are cumulative). */
  cumulative(): number[] {
    let total = 0;
    return this.counts.map((n) => (total += n));
  }
}

type Labels = Readonly<Record<string, string>>;
type Values = Awaited<ReturnType<Histogram['get']>>['values'];

// Label names are plain strings here: prom-client's generic label types do not compose with `le`.
class ScrapeHistogram extends Histogram {
  /**
   * An unregistered, empty twin: its `get` gives the name, help, type and aggregator as prom-client
   * shapes them. (`super.get` cannot: prom-client's `get` calls `getForPromString`, overridden here.)
   */
  private readonly shape: Histogram;

  constructor(
    private readonly metricName: string,
    help: string,
    labelNames: readonly string[],
    registry: Registry,
    private readonly series: () => Iterable<readonly [Labels, Buckets]>,
  ) {
    super({ name: metricName, help, labelNames, registers: [registry] });
    this.shape = new Histogram({ name: metricName, help, labelNames, registers: [] });
  }

  override async get(): ReturnType<Histogram['get']> {
    const base = await this.shape.get();
    const values: Values = [];
    const bucket = `${this.metricName}_bucket`;
    for (const [labels, b] of this.series()) {
      const cumulative = b.cumulative();
      b.bounds.forEach((le, i) =>
        values.push({ metricName: bucket, labels: { ...labels, le }, value: cumulative[i] ?? 0 }),
      );
      values.push({ metricName: bucket, labels: { ...labels, le: '+Inf' }, value: b.count });
      values.push({ metricName: `${this.metricName}_sum`, labels, value: b.sum });
      values.push({ metricName: `${this.metricName}_count`, labels, value: b.count });
    }
    return { ...base, values };
  }

  /**
   * The registry prints from this method when a metric has it (prom-client's Histogram does; its
   * typings leave it out): it must print our buckets too.
   */
  getForPromString(): ReturnType<Histogram['get']> {
    return this.get();
  }
}

/** Registers a histogram whose series (label values and their buckets) are read at each scrape. */
export function scrapeHistogram<L extends string>(
  registry: Registry,
  config: { name: string; help: string; labelNames: readonly L[] },
  series: () => Iterable<readonly [Readonly<Record<L, string>>, Buckets]>,
): void {
  new ScrapeHistogram(config.name, config.help, config.labelNames, registry, series);
}
