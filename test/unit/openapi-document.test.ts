// The OpenAPI description of the gateway's own routes is a valid OpenAPI 3.1 document, every
// schema in it compiles (strict ajv, JSON Schema 2020-12), and the end-to-end check built on it
// bites: answers that drift from it (a missing field, an extra field, an undescribed status, path
// or content type) are violations, through the real capture of a node:http server too.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERRORS } from '../../src/errors/catalogue.js';
import {
  HTTP_METHODS,
  OPENAPI_DOCUMENT,
  OPENAPI_PATH,
  type OperationObject,
  type ResponsesObject,
} from '../../src/openapi/openapi-document.js';
import { serveOpenApi } from '../../src/openapi/openapi-route.js';
import {
  checkResponse,
  schemaValidator,
  watchOpenApi,
  type CapturedResponse,
} from '../support/openapi-check.js';

const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8' };

/** A user row exactly as `userJson` builds it. */
function userRow(): Record<string, unknown> {
  return {
    ID: 2,
    ParentID: 1,
    Level: 1,
    Name: 'alice',
    Alias: 'alice',
    Email: 'alice@example.com',
    BillingEmail: null,
    Rates: 1,
    CreditUsed: 0,
    CreditBalance: [
      {
        amount: 50,
        balance: 50,
        granted_at: '2025-03-03T09:00:00.043Z',
        expires_at: '2026-03-03T09:00:00.043+08:00',
      },
    ],
    Balance: 50,
    CreditGranted: 50,
    HardLimit: 100,
    SoftLimit: 80,
    RateLimit: 60,
    ChildLimit: 10,
    Child: 0,
    Requests: 0,
    Status: true,
    AllowIPs: ['*'],
    AllowModels: ['*'],
    AllowEndpoints: [],
    PartialKey: 'abcdefghij0123456789',
    SecretKey: '***',
    DailyUsage: { CreditUsed: 0, Requests: 0 },
    MonthlyUsage: { CreditUsed: 0, Requests: 0 },
    CreatedAt: '2025-03-03T09:00:00.043Z',
    UpdatedAt: '2025-03-03T09:00:00.043Z',
  };
}

function answer(
  url: string,
  status: number,
  body: unknown,
  extra: Partial<CapturedResponse> = {},
): CapturedResponse {
  return {
    method: 'GET',
    url,
    status,
    headers: JSON_HEADERS,
    body: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)),
    ...extra,
  };
}

function operations(): Array<{
  path: string;
  key: string;
  responses: ResponsesObject;
  op?: OperationObject;
}> {
  const out: Array<{ path: string; key: string; responses: ResponsesObject; op?: OperationObject }> = [];
  for (const [path, item] of Object.entries(OPENAPI_DOCUMENT.paths)) {
    for (const m of HTTP_METHODS) {
      const op = item[m];
      if (op !== undefined) out.push({ path, key: m, responses: op.responses, op });
    }
    out.push({ path, key: 'x-other-methods', responses: item['x-other-methods'].responses });
  }
  return out;
}

describe('the OpenAPI document', () => {
  it('is a valid OpenAPI 3.1 document (official schema)', async () => {
    const result = await new Validator().validate(
      structuredClone(OPENAPI_DOCUMENT) as unknown as Record<string, unknown>,
    );
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it('is frozen', () => {
    expect(Object.isFrozen(OPENAPI_DOCUMENT)).toBe(true);
    expect(Object.isFrozen(OPENAPI_DOCUMENT.components.schemas['User'])).toBe(true);
  });

  it('describes every route of the gateway outside /v1, and the /v1/dashboard aliases', () => {
    expect(Object.keys(OPENAPI_DOCUMENT.paths).sort()).toEqual(
      [
        '/x-keys',
        '/x-keys/{ID}',
        '/x-users',
        '/x-users/{ident}',
        '/x-dna',
        '/x-dna/{ident}',
        '/x-logs',
        '/dashboard/x_user/info',
        '/dashboard/billing/usage',
        '/dashboard/billing/subscription',
        '/dashboard/billing/credit_grants',
        '/v1/dashboard/x_user/info',
        '/v1/dashboard/billing/usage',
        '/v1/dashboard/billing/subscription',
        '/v1/dashboard/billing/credit_grants',
        '/healthz',
        '/readyz',
        '/metrics',
        OPENAPI_PATH,
      ].sort(),
    );
  });

  it('has unique operation ids', () => {
    const ids = operations().flatMap((o) => (o.op === undefined ? [] : [o.op.operationId]));
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('compiles every response schema in strict mode, and every error answer is an Error', () => {
    let compiled = 0;
    for (const { path, key, responses } of operations()) {
      for (const [status, response] of Object.entries(responses)) {
        for (const media of Object.keys(response.content ?? {})) {
          const validate = schemaValidator(OPENAPI_DOCUMENT, [
            'paths',
            path,
            key,
            'responses',
            status,
            'content',
            media,
            'schema',
          ]);
          compiled++;
          if (JSON.stringify(response.content?.[media]).includes('#/components/schemas/Error')) {
            const body = { error: { message: 'm', type: 't', param: null, code: 'c' } };
            // The generic shape is refused only for its pinned code and type, never for its form.
            validate(body);
            const shapeErrors = (validate.errors ?? []).filter((e) => !e.instancePath.startsWith('/error/'));
            expect(shapeErrors, `${key} ${path} ${status}`).toEqual([]);
          }
        }
      }
    }
    expect(compiled).toBeGreaterThan(60);
  });

  it('pins error codes and types to the catalogue', () => {
    const validate = schemaValidator(OPENAPI_DOCUMENT, [
      'paths',
      '/x-keys',
      'get',
      'responses',
      '403',
      'content',
      'application/json',
      'schema',
    ]);
    const e = ERRORS.root_only;
    expect(validate({ error: { message: e.message, type: e.type, param: null, code: e.code } })).toBe(true);
    expect(validate({ error: { message: e.message, type: e.type, param: null, code: 'forbidden' } })).toBe(
      false,
    );
  });

  it('compiles every request body schema', () => {
    for (const { path, key, op } of operations()) {
      if (op?.requestBody === undefined) continue;
      for (const media of Object.keys(op.requestBody.content)) {
        expect(() =>
          schemaValidator(OPENAPI_DOCUMENT, ['paths', path, key, 'requestBody', 'content', media, 'schema']),
        ).not.toThrow();
      }
    }
  });
});

describe('the check of answers against the document', () => {
  it('accepts a conforming /x-users listing and lookup', () => {
    const headers = {
      ...JSON_HEADERS,
      'x-total-count': '1',
      'x-page': '1',
      'x-per-page': '1000',
      'x-total-pages': '1',
    };
    expect(checkResponse(answer('/x-users?page=1', 200, [userRow()], { headers }))).toEqual([]);
    expect(checkResponse(answer('/x-users/alice', 200, [userRow()]))).toEqual([]);
    expect(checkResponse(answer('/x-dna/%E5%BC%A0', 200, [userRow()]))).toEqual([]);
  });

  it('reports an /x-users row missing a required field', () => {
    const row = userRow();
    delete row['PartialKey'];
    const problems = checkResponse(answer('/x-users', 200, [row])) ?? [];
    expect(problems.join('\n')).toMatch(/PartialKey/);
  });

  it('reports an /x-users row with a field the description does not have', () => {
    const problems = checkResponse(answer('/x-users', 200, [{ ...userRow(), Secret: 'x' }])) ?? [];
    expect(problems.join('\n')).toMatch(/additional properties.*Secret/);
  });

  it('reports a wrong type, a lookup that is not one element, and a bad paging header', () => {
    expect(checkResponse(answer('/x-users', 200, [{ ...userRow(), Balance: '50' }]))).not.toEqual([]);
    expect(checkResponse(answer('/x-users/alice', 200, [userRow(), userRow()]))).not.toEqual([]);
    const headers = { ...JSON_HEADERS, 'x-total-count': 'many' };
    expect(checkResponse(answer('/x-users', 200, [userRow()], { headers }))?.join('\n')).toMatch(
      /x-total-count/,
    );
  });

  it('reports an undescribed status, content type, method answer and path', () => {
    expect(checkResponse(answer('/healthz', 201, { status: 'ok' }))?.join('\n')).toMatch(/status 201/);
    expect(
      checkResponse(answer('/healthz', 200, 'ok', { headers: { 'content-type': 'text/plain' } }))?.join('\n'),
    ).toMatch(/content-type text\/plain/);
    const error = { error: { message: 'm', type: 'invalid_request_error', param: null, code: 'not_found' } };
    // /x-users answers 405 to PATCH, never 404.
    expect(checkResponse(answer('/x-users', 404, error, { method: 'PATCH' }))).not.toEqual([]);
    expect(checkResponse(answer('/x-nothing', 200, { status: 'ok' }))?.join('\n')).toMatch(
      /described nowhere/,
    );
  });

  it('reports an error body of the wrong shape or code', () => {
    const wrongCode = { error: { message: 'm', type: 'invalid_request_error', param: null, code: 'nope' } };
    expect(checkResponse(answer('/x-keys', 401, wrongCode))).not.toEqual([]);
    expect(checkResponse(answer('/x-keys', 401, { message: 'no key' }))).not.toEqual([]);
    const e = ERRORS.missing_key;
    const right = { error: { message: e.message, type: e.type, param: null, code: e.code } };
    expect(checkResponse(answer('/x-keys', 401, right))).toEqual([]);
  });

  it('leaves alone /v1, unknown routes answered 404, static pages and preflights', () => {
    expect(checkResponse(answer('/v1/chat/completions', 200, 'anything'))).toBeUndefined();
    expect(checkResponse(answer('/x-nothing', 404, 'anything'))).toBeUndefined();
    expect(
      checkResponse(answer('/docs/', 200, '<html>', { headers: { 'content-type': 'text/html' } }), {
        isStatic: (p) => p.startsWith('/docs/'),
      }),
    ).toBeUndefined();
    expect(
      checkResponse(answer('/x-users', 204, '', { method: 'OPTIONS', preflight: true })),
    ).toBeUndefined();
    // /v1/dashboard is the gateway's own, and checked.
    expect(checkResponse(answer('/v1/dashboard/billing/usage', 200, {}))).not.toEqual([]);
  });
});

describe('the capture of a real server', () => {
  let server: Server;
  let base: string;

  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === OPENAPI_PATH) return serveOpenApi(res);
      // A drifted /x-users: a row without PartialKey, written in two chunks after writeHead.
      const row = userRow();
      delete row['PartialKey'];
      const text = JSON.stringify([row]);
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write(text.slice(0, 10));
      res.end(Buffer.from(text.slice(10)));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('catches the drift through writeHead, write and end, and throws on assert', async () => {
    const watch = watchOpenApi(server);
    const r = await fetch(`${base}/x-users`);
    await r.arrayBuffer();
    const served = await fetch(`${base}${OPENAPI_PATH}`);
    expect(await served.json()).toEqual(OPENAPI_DOCUMENT);
    await new Promise((resolve) => setImmediate(resolve));
    expect(watch.checked).toBe(2);
    expect(watch.violations, JSON.stringify(watch.violations)).toHaveLength(1);
    expect(watch.violations[0]).toMatchObject({ method: 'GET', path: '/x-users', status: 200 });
    expect(() => watch.assertConforms()).toThrow(/GET \/x-users → 200[\s\S]*PartialKey/);
  });
});
