// Two pools over one store (two handles, as two instances would have) adding the same keys at
// the same moment, as INIT_KEYS does on instances starting together: on every backend, one row
// per key, a quiet duplicate for the loser, and every pool serving every key.
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createKeyRepository } from '../../src/keys/key-repository.js';
import { KeyPool } from '../../src/keys/key-pool.js';
import { createSecrets } from '../../src/keys/secrets.js';
import { openStore, type Store } from '../../src/store/store.js';
import { storeBackends, type OpenedStore } from '../support/stores.js';

const secrets = createSecrets(Buffer.alloc(32, 3));
const policy = {
  cooldownMs: 1000,
  ejectAfter: 3,
  ejectBaseMs: 1000,
  maxEjectMs: 8000,
  probeIntervalMs: 5000,
};

describe.each(storeBackends())('$name store', (backend) => {
  let opened: OpenedStore;
  let second: Store;
  beforeEach(async () => {
    opened = await backend.open();
    second = await openStore(opened.choice, pino({ level: 'silent' }));
  });
  afterEach(async () => {
    await second.close();
    await opened.dispose();
  });

  it('adding the same keys from two pools at once: one row each, no error, both pools serve them', async () => {
    const levels: number[] = [];
    const log = pino(
      { level: 'info' },
      { write: (line: string) => levels.push((JSON.parse(line) as { level: number }).level) },
    );
    const pools = [opened.store, second].map(
      (s) => new KeyPool(createKeyRepository(s.db), secrets, policy, log),
    );
    await Promise.all(pools.map((p) => p.load()));
    const keys = Array.from({ length: 8 }, (_, i) => `sk-init-race-${String(i).padStart(12, '0')}`);
    const results = await Promise.all(pools.map((p) => Promise.all(keys.map((k) => p.add(k)))));
    keys.forEach((_, k) => expect(results.filter((r) => r[k]!.ok).length).toBe(1));
    const ids = (await opened.store.db.selectFrom('upstream_keys').select('id').orderBy('id').execute()).map(
      (r) => r.id,
    );
    expect(ids).toHaveLength(keys.length);
    for (const p of pools) {
      expect(p.list().map((k) => k.id)).toEqual(ids);
      const served = new Set(Array.from({ length: keys.length }, () => p.pick(new Set())?.secret));
      expect(served).toEqual(new Set(keys));
    }
    expect(levels.filter((l) => l >= 40)).toEqual([]);
  });
});
