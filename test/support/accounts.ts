/** Helpers for tests that need sub-accounts: create and update them through the real API. */
import { expect } from 'vitest';
import type { Account } from '../../src/accounts/account.js';
import type { AccountRegistry } from '../../src/accounts/account-registry.js';
import { call, type TestGateway } from './gateway.js';

export async function createChild(
  gw: TestGateway,
  name: string,
  credit: number,
  extra: Record<string, unknown> = {},
  parentKey?: string,
): Promise<string> {
  const r = await call(gw, '/x-users', {
    body: { Name: name, Email: `${name}@example.com`, CreditGranted: credit, ...extra },
    ...(parentKey !== undefined && { key: parentKey }),
  });
  const body = (await r.json()) as { User?: { SecretKey?: string }; error?: unknown };
  expect(r.status, JSON.stringify(body)).toBe(200);
  return body.User?.SecretKey ?? '';
}

export async function updateChild(
  gw: TestGateway,
  name: string,
  body: Record<string, unknown>,
): Promise<Response> {
  return call(gw, `/x-users/${encodeURIComponent(name)}`, { method: 'PUT', body });
}

/**
 * The in-memory object of an account this test made (it stays loaded while the test runs: the
 * registry keeps far more accounts than a test makes). Sync, for assertions on live state.
 */
export function loadedByName(app: { registry: AccountRegistry }, name: string): Account | undefined {
  for (const a of app.registry.all()) if (a.name === name) return a;
  return undefined;
}
