/**
 * Metrics of the account cache (accounts/account-registry.ts, account-loader.ts), read at each
 * scrape: how many accounts this instance holds in memory, how many it evicted, and how many
 * store reads finding and loading accounts took. The last one is what a flood of wrong keys would
 * grow if unknown keys were not remembered.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

export interface AccountCacheSource {
  readonly registry: { readonly size: number; readonly evictions: number };
  readonly loader: { readonly reads: number };
}

export function registerAccountMetrics(registry: Registry, source: AccountCacheSource): void {
  new Gauge({
    name: 'proxyxai_accounts_in_memory',
    help: 'Accounts this instance holds in memory (the others are read from the store on first use)',
    registers: [registry],
    collect() {
      this.set(source.registry.size);
    },
  });
  counter(registry, 'proxyxai_account_evictions_total', 'Idle accounts evicted from memory', () => {
    return source.registry.evictions;
  });
  counter(
    registry,
    'proxyxai_account_store_reads_total',
    'Store reads made to find or load accounts (an unknown key is read once, then remembered)',
    () => source.loader.reads,
  );
}

/** A counter whose value is read from `value` at each scrape. */
function counter(registry: Registry, name: string, help: string, value: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(value());
    },
  });
}
