/**
 * A gateway over a mock upstream that models two upstream organisations by key, with sub-accounts
 * that share the pool: the setting of every tenancy test.
 */
import OpenAI, { toFile } from 'openai';
import { startMockUpstream, type MockUpstream, type MockUpstreamOptions } from './mock-upstream.js';
import { startGateway, removeDir, type TestGateway } from './gateway.js';
import { createChild, loadedByName } from './accounts.js';
import type { Account } from '../../src/accounts/account.js';

export const KEY_A = 'sk-upstream-org-a-aaaaaaaaaaaaaaaaaaaa01';
export const KEY_A2 = 'sk-upstream-org-a-aaaaaaaaaaaaaaaaaaaa02';
export const KEY_B = 'sk-upstream-org-b-bbbbbbbbbbbbbbbbbbbb01';

export interface Tenants {
  mock: MockUpstream;
  gw: TestGateway;
  /** A sub-account's key by name. */
  key(name: string): string;
  client(name: string): OpenAI;
  account(name: string): Account;
  /** Upstream requests whose path mentions `id`. */
  upstreamCallsFor(id: string): number;
  /** Stops the gateway and starts it again on the same data (t.gw is the new one). */
  restart(env?: Record<string, string>): Promise<void>;
  stop(): Promise<void>;
}

export async function startTenants(
  opts: {
    env?: Record<string, string>;
    /** Pool keys, in order (default: A then B, so round-robin alternates organisations). */
    poolKeys?: string[];
    children?: Record<string, number>;
    mock?: MockUpstreamOptions;
  } = {},
): Promise<Tenants> {
  const mock = await startMockUpstream({
    organisations: { [KEY_A]: 'org-a', [KEY_A2]: 'org-a', [KEY_B]: 'org-b' },
    ...opts.mock,
  });
  const gw = await startGateway({
    OPENAI_API_BASE: mock.url,
    INIT_KEYS: (opts.poolKeys ?? [KEY_A, KEY_B]).join(','),
    FOLLOW_INTERVAL_MS: '3600000',
    ...opts.env,
  });
  const keys: Record<string, string> = {};
  for (const [name, credit] of Object.entries(opts.children ?? { alice: 50, bobby: 50 })) {
    keys[name] = await createChild(gw, name, credit);
  }
  const t: Tenants = {
    mock,
    gw,
    key(name) {
      const k = keys[name];
      if (k === undefined) throw new Error(`no key for ${name}`);
      return k;
    },
    client: (name) => t.gw.client(t.key(name)),
    account(name) {
      const a = loadedByName(t.gw.app, name);
      if (a === undefined) throw new Error(`no account ${name}`);
      return a;
    },
    upstreamCallsFor: (id) => mock.requests.filter((r) => r.path.includes(id)).length,
    async restart(env = {}) {
      t.gw = await t.gw.restart({ OPENAI_API_BASE: mock.url, ...opts.env, ...env });
      // Accounts are read on first use after a restart: load the tenants for `account(name)`.
      for (const name of Object.keys(keys)) await t.gw.app.accounts.byName(name);
    },
    async stop() {
      await t.gw.stop();
      await mock.close();
      removeDir(t.gw.dataDir);
    },
  };
  return t;
}

/** A small JSONL or text file for uploads through the SDK. */
export function fileOf(content: string, name = 'data.jsonl'): Promise<File> {
  return toFile(Buffer.from(content), name);
}

/** A batch input file of chat completion lines. */
export function batchLines(lines: Array<{ content: string; max_tokens?: number; model?: string }>): string {
  return lines
    .map((l, i) =>
      JSON.stringify({
        custom_id: `req-${i}`,
        method: 'POST',
        url: '/v1/chat/completions',
        body: {
          model: l.model ?? 'gpt-4o-mini',
          messages: [{ role: 'user', content: l.content }],
          ...(l.max_tokens !== undefined && { max_tokens: l.max_tokens }),
        },
      }),
    )
    .join('\n');
}
