// The endpoint table: classification of paths, and the gate that refuses what is not open.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PAGE, renderEndpointTable, withTable } from '../../scripts/endpoint-docs.js';
import type { Account } from '../../src/accounts/account.js';
import { decideEndpoint, EndpointGate } from '../../src/tenancy/endpoint-gate.js';
import { classify } from '../../src/tenancy/classify.js';
import { FAMILIES, type FamilyName, type RouteDef } from '../../src/tenancy/endpoint-policy.js';
import { ENABLEABLE_FAMILIES } from '../../src/tenancy/families.js';
import { OBJECT_KINDS, type ObjectKind } from '../../src/tenancy/object-kinds.js';

function account(allowEndpoints: string[] | null = null): Account {
  return { allowEndpoints: allowEndpoints === null ? null : new Set(allowEndpoints) } as Account;
}

/** A concrete request path for a route pattern. */
function sample(route: RouteDef): { method: string; path: string } {
  const path = route.pattern
    .replace(/\{([a-z_]+)\}/g, (_m, name: string) =>
      name === 'id' ? 'sub_1' : `${OBJECT_KINDS[name as ObjectKind].prefix}abc`,
    )
    .replace(/\/\*\*$/, '/deeper/path');
  return { method: route.method === '*' ? 'POST' : route.method, path };
}

describe('the endpoint table', () => {
  it('classifies the hot paths with their policy and object handling', () => {
    expect(classify('POST', '/v1/chat/completions')).toMatchObject({
      family: 'chat',
      route: { policy: 'metered', action: { kind: 'create', object: 'chat_completion', when: 'store-true' } },
      pathObjects: [],
    });
    expect(classify('POST', '/v1/responses')?.route).toMatchObject({ policy: 'metered', background: true });
    expect(classify('POST', '/v1/batches')?.route).toMatchObject({
      policy: 'metered-when-done',
      action: { kind: 'batch' },
    });
    expect(classify('GET', '/v1/files')?.route.action).toEqual({
      kind: 'list',
      object: 'file',
      order: 'desc',
      tag: 'purpose',
    });
  });

  it('names the owned objects of a path, outermost first, and decodes them', () => {
    expect(classify('GET', '/v1/files/file-abc/content')?.pathObjects).toEqual([
      { kind: 'file', id: 'file-abc' },
    ]);
    expect(classify('DELETE', '/v1/vector_stores/vs_1/files/file-2')).toMatchObject({
      family: 'vector_stores',
      pathObjects: [{ kind: 'vector_store', id: 'vs_1' }],
    });
    expect(classify('GET', '/v1/responses/resp%5F9')?.pathObjects).toEqual([
      { kind: 'response', id: 'resp_9' },
    ]);
  });

  it('matches static routes before the parametric ones next to them', () => {
    expect(classify('POST', '/v1/responses/input_tokens')?.route.policy).toBe('free');
    expect(classify('POST', '/v1/responses/compact')?.route.policy).toBe('metered');
    expect(classify('POST', '/v1/threads/runs')?.route.policy).toBe('never');
    expect(classify('POST', '/v1/threads/thread_1/runs')?.route.policy).toBe('never');
    expect(classify('GET', '/v1/threads/thread_1/runs/run_1/steps')?.route.policy).toBe('never');
  });

  it('leaves paths and methods it does not know unclassified', () => {
    expect(classify('GET', '/v1/some/new/thing')).toBeUndefined();
    expect(classify('PUT', '/v1/files')).toBeUndefined();
    expect(classify('GET', '/v1/files/')).toBeUndefined();
    expect(classify('GET', '/v1')).toBeUndefined();
  });

  it('reaches every route of the table with a sample path (no route is shadowed)', () => {
    for (const [family, def] of Object.entries(FAMILIES) as Array<
      [FamilyName, { routes: readonly RouteDef[] }]
    >) {
      for (const route of def.routes) {
        const { method, path } = sample(route);
        const got = classify(method, path);
        expect({ family: got?.family, pattern: got?.route.pattern, path }).toEqual({
          family,
          pattern: route.pattern,
          path,
        });
      }
    }
  });

  it('opens only families whose routes are refused by default', () => {
    for (const name of ENABLEABLE_FAMILIES) {
      const policies = new Set(FAMILIES[name].routes.map((r) => r.policy));
      expect(policies.has('refused'), name).toBe(true);
      expect(policies.has('metered'), name).toBe(false);
    }
  });
});

describe('the endpoint gate', () => {
  const closed = { unknownEndpoints: 'refuse' as const, endpointsEnabled: [] };

  it('refuses what the table refuses or does not know, with 403 endpoint_not_allowed', () => {
    for (const [method, path] of [
      ['POST', '/v1/fine_tuning/jobs'],
      ['POST', '/v1/realtime/client_secrets'],
      ['POST', '/v1/vector_stores'],
      ['GET', '/v1/organization/users'],
      ['POST', '/v1/evals'],
      ['GET', '/v1/some/new/thing'],
    ] as const) {
      const d = decideEndpoint(method, path, account(), closed);
      expect(d.ok, path).toBe(false);
      if (!d.ok) expect([d.error.status, d.error.code]).toEqual([403, 'endpoint_not_allowed']);
    }
  });

  it('opens a refused family for everyone (ENDPOINTS_ENABLED) or for one account (AllowEndpoints), never a `never` route', () => {
    expect(decideEndpoint('POST', '/v1/fine_tuning/jobs', account(['fine_tuning']), closed).ok).toBe(true);
    expect(decideEndpoint('POST', '/v1/fine_tuning/jobs', account(['videos']), closed).ok).toBe(false);
    const open = { unknownEndpoints: 'refuse' as const, endpointsEnabled: ['vector_stores' as const] };
    expect(decideEndpoint('GET', '/v1/vector_stores/vs_1/files', account(), open).ok).toBe(true);
    expect(
      decideEndpoint('POST', '/v1/fine_tuning/checkpoints/x/permissions', account(['fine_tuning']), closed)
        .ok,
    ).toBe(false);
  });

  it('remembers allowed decisions of fixed paths only, never a refusal that depends on the account', () => {
    const gate = new EndpointGate(closed);
    const first = gate.decide('POST', '/v1/chat/completions', account());
    expect(gate.decide('POST', '/v1/chat/completions', account())).toBe(first);
    expect(gate.decide('GET', '/v1/files/file-1', account())).not.toBe(
      gate.decide('GET', '/v1/files/file-1', account()),
    );
    expect(gate.decide('POST', '/v1/fine_tuning/jobs', account()).ok).toBe(false);
    expect(gate.decide('POST', '/v1/fine_tuning/jobs', account(['fine_tuning'])).ok).toBe(true);
    expect(gate.decide('POST', '/v1/fine_tuning/jobs', account()).ok).toBe(false);
  });

  it('forwards unknown paths unclassified when UNKNOWN_ENDPOINTS=forward', () => {
    expect(
      decideEndpoint('GET', '/v1/some/new/thing', account(), { ...closed, unknownEndpoints: 'forward' }),
    ).toEqual({
      ok: true,
      classified: undefined,
    });
  });
});

describe('the endpoint table in the docs', () => {
  it('is exactly the table the gateway enforces (regenerate with node --import tsx scripts/endpoint-docs.ts)', () => {
    const page = readFileSync(PAGE, 'utf8');
    expect(withTable(page)).toBe(page);
    expect(page).toContain(renderEndpointTable());
  });
});
