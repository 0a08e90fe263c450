/**
 * The OpenAPI 3.1 description of every route of the gateway outside `/v1` (plus the `/v1/dashboard`
 * aliases, which are the gateway's own): the admin API (/x-keys, /x-users, /x-dna), the request log
 * (/x-logs), the dashboard read models, health, readiness, metrics and this document itself.
 * `/v1/*` is OpenAI's API, described by OpenAI.
 *
 * It is a plain frozen object so the server can serialise it once and the end-to-end tests can
 * validate every real answer against it (test/support/openapi-check.ts): a field the code adds,
 * drops or retypes without changing this file fails the build. Hence `additionalProperties: false`
 * on every object the gateway builds itself, `required` on every field that is always present, and
 * error codes taken from the catalogue (a status here cannot disagree with errors/catalogue.ts).
 *
 * One extension: `x-other-methods` on a path item gives the answers to any method the item does not
 * list (405, or the same as GET where the route ignores the method), so that those answers are
 * described too without listing eight operations that only refuse.
 *
 * Kept in one file although long: it is one document, read top to bottom like the routes it
 * describes, and its schemas refer to each other by name; split, each part would need the others.
 */
import { MAX_PAGE_SIZE } from '../admin/users-routes.js';
import { MAX_USD } from '../billing/money.js';
import { MAX_RANGE_DAYS } from '../dashboard/billing-usage.js';
import { ERRORS, type ErrorName } from '../errors/catalogue.js';

/** A JSON Schema (2020-12) object, as written in the document. */
export type JsonSchema = { readonly [keyword: string]: unknown };

export interface HeaderObject {
  readonly description: string;
  readonly required?: boolean;
  readonly schema: JsonSchema;
}

export interface MediaTypeObject {
  readonly schema: JsonSchema;
}

export interface ResponseObject {
  readonly description: string;
  readonly headers?: Readonly<Record<string, HeaderObject>>;
  /** Absent: the answer has no body. */
  readonly content?: Readonly<Record<string, MediaTypeObject>>;
}

export type ResponsesObject = Readonly<Record<string, ResponseObject>>;

export interface ParameterObject {
  readonly name: string;
  readonly in: 'query' | 'path' | 'header';
  readonly description: string;
  readonly required?: boolean;
  readonly schema: JsonSchema;
}

export interface OperationObject {
  readonly operationId: string;
  readonly summary: string;
  readonly description?: string;
  readonly tags: readonly string[];
  readonly security?: ReadonlyArray<Readonly<Record<string, readonly string[]>>>;
  readonly parameters?: readonly ParameterObject[];
  readonly requestBody?: {
    readonly description?: string;
    readonly required: boolean;
    readonly content: Readonly<Record<string, MediaTypeObject>>;
  };
  readonly responses: ResponsesObject;
}

/** `x-other-methods`: the answers to a method the path item does not list. */
export interface OtherMethodsObject {
  readonly description: string;
  readonly responses: ResponsesObject;
}

export const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

export type PathItemObject = {
  readonly summary?: string;
  readonly parameters?: readonly ParameterObject[];
  readonly 'x-other-methods': OtherMethodsObject;
} & { readonly [M in HttpMethod]?: OperationObject };

export interface OpenApiDocument {
  readonly openapi: '3.1.0';
  readonly info: {
    readonly title: string;
    readonly version: string;
    readonly summary: string;
    readonly description: string;
    readonly license: { readonly name: string; readonly identifier: string };
  };
  readonly jsonSchemaDialect: string;
  readonly tags: ReadonlyArray<{ readonly name: string; readonly description: string }>;
  readonly security: ReadonlyArray<Readonly<Record<string, readonly string[]>>>;
  readonly paths: Readonly<Record<string, PathItemObject>>;
  readonly components: {
    readonly securitySchemes: Readonly<Record<string, JsonSchema>>;
    readonly schemas: Readonly<Record<string, JsonSchema>>;
  };
}

/** Where the document is served. */
export const OPENAPI_PATH = '/openapi.json';

// ---------------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------------

function ref(name: string): JsonSchema {
  return { $ref: `#/components/schemas/${name}` };
}

const JSON_TYPE = 'application/json';

function json(schema: JsonSchema): Readonly<Record<string, MediaTypeObject>> {
  return { [JSON_TYPE]: { schema } };
}

const isoTime: JsonSchema = {
  type: 'string',
  format: 'date-time',
  description: 'ISO 8601 with the offset of the gateway’s TZ (`…Z` in UTC).',
};
const usd: JsonSchema = { type: 'number', minimum: 0, description: 'USD, exact to the micro-dollar.' };
const signedUsd: JsonSchema = { type: 'number', description: 'USD, exact to the micro-dollar.' };
const count: JsonSchema = { type: 'integer', minimum: 0 };
const accountId: JsonSchema = { type: 'integer', minimum: 1 };
const rates: JsonSchema = {
  type: 'number',
  exclusiveMinimum: 0,
  description: 'Price multiplier of the account (1 = upstream list price).',
};
const level: JsonSchema = {
  type: 'integer',
  minimum: 0,
  description: 'The account’s tier, copied from its parent when created (not its depth in the tree).',
};
const stringList: JsonSchema = { type: 'array', items: { type: 'string' } };
const nullableString: JsonSchema = { type: ['string', 'null'] };

const REASON: Readonly<Record<number, string>> = {
  400: 'Bad request',
  401: 'Unauthorized',
  402: 'Payment required',
  403: 'Forbidden',
  404: 'Not found',
  405: 'Method not allowed',
  409: 'Conflict',
  413: 'Payload too large',
  500: 'Internal error',
  503: 'Service unavailable',
};

/**
 * The error answers for catalogue entries, grouped by their status: each status pins the `code`s
 * and `type`s it can carry, so the catalogue and the document cannot disagree.
 */
function errors(
  names: readonly ErrorName[],
  headers: Readonly<Record<number, Readonly<Record<string, HeaderObject>>>> = {},
): ResponsesObject {
  const byStatus = new Map<number, ErrorName[]>();
  for (const n of names) {
    const status = ERRORS[n].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), n]);
  }
  const out: Record<string, ResponseObject> = {};
  for (const [status, group] of byStatus) {
    const codes = [...new Set(group.map((n) => ERRORS[n].code))];
    const types = [...new Set(group.map((n) => ERRORS[n].type))];
    const extra = headers[status];
    out[String(status)] = {
      description: `${REASON[status] ?? 'Error'}: ${codes.map((c) => `\`${c ?? 'null'}\``).join(', ')}.`,
      ...(extra !== undefined && { headers: extra }),
      content: json({
        allOf: [
          ref('Error'),
          {
            type: 'object',
            properties: {
              error: {
                type: 'object',
                properties: { code: { enum: codes }, type: { enum: types } },
              },
            },
          },
        ],
      }),
    };
  }
  return out;
}

// A key of an account not in memory is looked up in the store: a store that cannot be read is 503.
const AUTH: readonly ErrorName[] = ['missing_key', 'invalid_key', 'account_disabled', 'store_unavailable'];
const BODY: readonly ErrorName[] = ['invalid_json', 'invalid_body', 'invalid_value', 'body_too_large'];

const allowHeader: Readonly<Record<string, HeaderObject>> = {
  allow: { description: 'The methods the route accepts.', required: true, schema: { type: 'string' } },
};

const noStore: Readonly<Record<string, HeaderObject>> = {
  'cache-control': {
    description: 'Balances change with every request: never cached.',
    required: true,
    schema: { const: 'no-store' },
  },
};

const warningHeader: Readonly<Record<string, HeaderObject>> = {
  'x-proxyxai-warning': {
    description:
      'The answer’s `Warnings`, joined, non-ASCII written as `\\uXXXX`, cut at 2000 characters. Absent without warnings.',
    schema: { type: 'string' },
  },
};

const pagingHeaders: Readonly<Record<string, HeaderObject>> = {
  'x-total-count': {
    description: 'Accounts in the whole listing (absent on a lookup by ident, id, name or email).',
    schema: { type: 'integer', minimum: 0 },
  },
  'x-page': { description: 'This page (1-based).', schema: { type: 'integer', minimum: 1 } },
  'x-per-page': {
    description: 'Rows per page.',
    schema: { type: 'integer', minimum: 1, maximum: MAX_PAGE_SIZE },
  },
  'x-total-pages': { description: 'Pages in the listing.', schema: { type: 'integer', minimum: 0 } },
};

function ok(description: string, schema: JsonSchema, headers?: Readonly<Record<string, HeaderObject>>) {
  return {
    '200': { description, ...(headers !== undefined && { headers }), content: json(schema) },
  } satisfies ResponsesObject;
}

const identParam: ParameterObject = {
  name: 'ident',
  in: 'path',
  required: true,
  description:
    'The account’s ID, Name or Email (percent-encoded; names may be in any script). Tried as an ID first, then a name, then an e-mail.',
  schema: { type: 'string', minLength: 1 },
};

const keyIdParam: ParameterObject = {
  name: 'ID',
  in: 'path',
  required: true,
  description: 'The upstream key’s ID (a path that is not a number answers 404 `not_found`).',
  schema: { type: 'string', pattern: '^[0-9]{1,15}$' },
};

const listingParams: readonly ParameterObject[] = [
  {
    name: 'page',
    in: 'query',
    description: 'Page of the listing, from 1.',
    schema: { type: 'integer', minimum: 1, maximum: 1_000_000_000, default: 1 },
  },
  {
    name: 'size',
    in: 'query',
    description: `Rows per page, 1–${MAX_PAGE_SIZE}.`,
    schema: { type: 'integer', minimum: 1, maximum: MAX_PAGE_SIZE, default: MAX_PAGE_SIZE },
  },
  {
    name: 'id',
    in: 'query',
    description: 'Look one account up by ID instead of listing (a one-element array).',
    schema: { type: 'string', pattern: '^[0-9]{1,15}$' },
  },
  { name: 'name', in: 'query', description: 'Look one account up by Name.', schema: { type: 'string' } },
  { name: 'email', in: 'query', description: 'Look one account up by Email.', schema: { type: 'string' } },
];

// ---------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------

/** One object schema with every listed property required and no other property allowed. */
function closed(
  description: string,
  properties: Readonly<Record<string, JsonSchema>>,
  optional: readonly string[] = [],
): JsonSchema {
  return {
    type: 'object',
    description,
    required: Object.keys(properties).filter((k) => !optional.includes(k)),
    additionalProperties: false,
    properties,
  };
}

const usageWindow = closed('Spend and requests of the current day or month.', {
  CreditUsed: usd,
  Requests: count,
});

/**
 * The columns of the CSV export of /x-logs, in order. A copy of logs/log-row.ts `CSV_COLUMNS` on
 * purpose: importing it would make the description follow the code instead of checking it.
 */
export const REQUEST_LOG_CSV_COLUMNS = [
  'created_at',
  'request_id',
  'account_id',
  'account_name',
  'endpoint',
  'model',
  'stream',
  'prompt_tokens',
  'cached_tokens',
  'completion_tokens',
  'reasoning_tokens',
  'images',
  'audio_seconds',
  'characters',
  'cost',
  'rates',
  'outcome',
  'error_code',
  'status',
  'latency_ms',
  'ttfb_ms',
  'attempts',
  'client_ip',
] as const;

const OUTCOMES = [
  'completed',
  'client-gone',
  'upstream-error',
  'refused',
  'failed',
  'cancelled',
  'expired',
  'incomplete',
] as const;

const schemas: Record<string, JsonSchema> = {
  Error: {
    type: 'object',
    description: 'Every error the gateway answers, on every route, in OpenAI’s shape.',
    required: ['error'],
    additionalProperties: false,
    properties: {
      error: {
        type: 'object',
        required: ['message', 'type', 'param', 'code'],
        additionalProperties: false,
        properties: {
          message: { type: 'string', description: 'For people; often more specific than the code.' },
          type: { type: 'string', description: 'OpenAI’s error type (`invalid_request_error`, …).' },
          param: { ...nullableString, description: 'The offending field or parameter, if any.' },
          code: {
            ...nullableString,
            description: 'Tells the cases apart (null only for an unknown /v1 object).',
          },
        },
      },
    },
  },
  Card: closed(
    'A credit card: a grant with its own expiry. Cards are spent earliest expiry first.',
    {
      amount: { ...usd, description: 'Face value when granted.' },
      balance: { ...usd, description: 'What is left (worth nothing once expired).' },
      granted_at: isoTime,
      expires_at: isoTime,
      reference: { type: 'string', description: 'Where the grant came from, when recorded.' },
    },
    ['reference'],
  ),
  UsageWindow: usageWindow,
  User: closed('A sub-account as /x-users and /x-dna list it.', {
    ID: accountId,
    ParentID: { type: ['integer', 'null'], minimum: 1, description: 'null for root.' },
    Level: level,
    Name: { type: 'string' },
    Alias: { type: 'string' },
    Email: { type: 'string' },
    BillingEmail: nullableString,
    Rates: rates,
    CreditUsed: usd,
    CreditBalance: { type: 'array', items: ref('Card'), description: 'Every card, expired ones too.' },
    Balance: {
      type: ['number', 'null'],
      minimum: 0,
      description: 'Σ live cards; null for root (unlimited).',
    },
    CreditGranted: signedUsd,
    HardLimit: usd,
    SoftLimit: usd,
    RateLimit: { type: 'integer', minimum: 1, description: 'Requests per minute.' },
    ChildLimit: count,
    Child: { ...count, description: 'Number of direct children.' },
    Requests: count,
    Status: { type: 'boolean', description: 'false: disabled.' },
    AllowIPs: { ...stringList, description: '`["*"]`: any address.' },
    AllowModels: { ...stringList, description: '`["*"]`: any model.' },
    AllowEndpoints: { ...stringList, description: 'Endpoint families opened for this account.' },
    PartialKey: { type: 'string', description: 'The key’s last characters, to recognise it.' },
    SecretKey: { const: '***', description: 'Keys are shown only once, when created.' },
    DailyUsage: ref('UsageWindow'),
    MonthlyUsage: ref('UsageWindow'),
    CreatedAt: isoTime,
    UpdatedAt: isoTime,
  }),
  UserList: {
    type: 'array',
    items: ref('User'),
    description: 'Newest first. A lookup (path ident, `id`, `name`, `email`) is a one-element array.',
  },
  Parent: closed('The caller after the change.', {
    ID: accountId,
    Name: { type: 'string' },
    Level: level,
    Rates: rates,
    Child: count,
    ChildLimit: count,
    CreditBalance: { type: 'array', items: ref('Card') },
    Balance: { type: ['number', 'null'], minimum: 0, description: 'null for root.' },
    HardLimit: usd,
    SoftLimit: usd,
    RateLimit: { type: 'integer', minimum: 1 },
  }),
  Warnings: {
    type: 'array',
    items: { type: 'string' },
    minItems: 1,
    description: 'Notices about the request (ignored fields, a lowered SoftLimit); absent without any.',
  },
  UserCreated: closed(
    'Answer of POST /x-users. `User.SecretKey` is the only time the full key is shown.',
    {
      Action: { const: 'add' },
      Parent: ref('Parent'),
      User: closed('The new sub-account.', {
        ID: accountId,
        Name: { type: 'string' },
        Alias: { type: 'string' },
        SecretKey: { type: 'string', pattern: '^sk-Xvs[A-Za-z0-9]{45}$' },
        Updates: closed('Its state.', {
          Name: { type: 'string' },
          Email: { type: 'string' },
          Level: level,
          Rates: rates,
          Child: count,
          CreditBalance: { type: 'array', items: ref('Card') },
          CreditGranted: signedUsd,
          HardLimit: usd,
          SoftLimit: usd,
          RateLimit: { type: 'integer', minimum: 1 },
        }),
      }),
      Warnings: ref('Warnings'),
    },
    ['Warnings'],
  ),
  UserUpdated: closed(
    'Answer of PUT /x-users/{ident}: the caller as `Parent`, the target’s state as `User.Updates`.',
    {
      Action: { const: 'update' },
      Parent: ref('Parent'),
      User: closed('The changed account.', {
        ID: accountId,
        Name: { type: 'string' },
        Updates: closed(
          'The target’s state; the list fields, Alias and BillingEmail only when the request changed them.',
          {
            Balance: { type: ['number', 'null'], minimum: 0 },
            CreditBalance: { type: 'array', items: ref('Card') },
            CreditGranted: signedUsd,
            ChildLimit: count,
            Email: { type: 'string' },
            HardLimit: usd,
            Level: level,
            Name: { type: 'string' },
            RateLimit: { type: 'integer', minimum: 1 },
            Rates: rates,
            SoftLimit: usd,
            Status: { type: 'boolean' },
            Alias: { type: 'string' },
            BillingEmail: nullableString,
            AllowIPs: stringList,
            AllowModels: stringList,
            AllowEndpoints: stringList,
          },
          ['Alias', 'BillingEmail', 'AllowIPs', 'AllowModels', 'AllowEndpoints'],
        ),
      }),
      Warnings: ref('Warnings'),
    },
    ['Warnings'],
  ),
  UserDeleted: closed(
    'Answer of DELETE /x-users/{ident}. `User.CreditBalance` is what the child held when deleted: it went back to the parent.',
    {
      Action: { const: 'delete' },
      Parent: closed('The caller after the refund.', {
        CreditBalance: { type: 'array', items: ref('Card') },
        Balance: { type: ['number', 'null'], minimum: 0 },
        ID: accountId,
        Name: { type: 'string' },
        Rates: rates,
      }),
      User: closed('The deleted account.', {
        CreditBalance: { type: 'array', items: ref('Card') },
        ID: accountId,
        Name: { type: 'string' },
        Rates: rates,
      }),
    },
  ),
  UserCreate: {
    type: 'object',
    description:
      'Body of POST /x-users. Unknown fields are ignored and reported in `Warnings` and `x-proxyxai-warning`.',
    required: ['Name', 'Email', 'CreditGranted'],
    properties: {
      Name: { type: 'string', description: 'Unique (ignoring case).' },
      Email: { type: 'string', format: 'email', description: 'Unique (ignoring case).' },
      CreditGranted: {
        type: 'number',
        minimum: 0,
        maximum: MAX_USD,
        description: 'USD on the first card; at least USER_MIN_BALANCE.',
      },
      Alias: { type: 'string', minLength: 1, maxLength: 100 },
      Rates: { type: 'number', exclusiveMinimum: 0, description: 'At least the caller’s own Rates.' },
      Days: { type: 'number', minimum: 0, maximum: 365, description: 'Validity of the card (365).' },
    },
  },
  UserUpdate: {
    type: 'object',
    description:
      'Body of PUT /x-users/{ident}: at least one known field. Unknown fields are ignored and reported; `AllowIP`, `DenyIP` and `RPM` are read as older names of `AllowIPs`, `DenyIPs` and `RateLimit`.',
    minProperties: 1,
    properties: {
      CreditGranted: {
        type: 'number',
        description: 'Positive: recharge (a new card); negative: take back.',
      },
      Days: { type: 'number', minimum: 0, maximum: 365 },
      Rates: { type: 'number', exclusiveMinimum: 0 },
      RateLimit: { type: 'integer', minimum: 1 },
      Name: { type: 'string' },
      Email: { type: 'string', format: 'email' },
      Alias: { type: 'string', minLength: 1, maxLength: 100 },
      BillingEmail: { type: ['string', 'null'], description: '`""` or null removes it.' },
      AllowIPs: ref('StringOrList'),
      DenyIPs: ref('StringOrList'),
      AllowModels: ref('StringOrList'),
      DenyModels: ref('StringOrList'),
      AllowEndpoints: ref('StringOrList'),
      HardLimit: { type: 'number', minimum: 0, maximum: MAX_USD },
      SoftLimit: { type: 'number', minimum: 0, maximum: MAX_USD },
      Status: { type: 'boolean' },
      ChildLimit: { type: 'integer', minimum: 0 },
    },
  },
  StringOrList: {
    description: 'A space- or comma-separated string, or an array of strings.',
    anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }],
  },
  Key: closed('An upstream key of the pool, masked.', {
    ID: { type: 'integer', minimum: 1 },
    Key: { type: 'string', description: 'Masked: its first and last characters.' },
    Group: { ...nullableString, description: 'Its upstream organisation (null: none).' },
    Status: { enum: ['active', 'cooling', 'parked', 'disabled'] },
    Reason: { ...nullableString, description: 'Why it is not active (null when it is).' },
    Until: {
      type: ['string', 'null'],
      format: 'date-time',
      description: 'End of cooling, or next probe of a parked key.',
    },
    LastError: { ...nullableString, description: 'The last failed attempt.' },
    Requests: count,
    Failures: count,
    CreatedAt: isoTime,
    UpdatedAt: isoTime,
  }),
  KeyCreate: {
    type: 'object',
    required: ['SecretKey'],
    properties: {
      SecretKey: { type: 'string', minLength: 8, maxLength: 512, pattern: '^\\S+$' },
      Group: { type: ['string', 'null'], maxLength: 64, pattern: '^[A-Za-z0-9_.:-]*$' },
    },
  },
  KeyChange: {
    type: 'object',
    description: '`Status` or `Group`, or both.',
    minProperties: 1,
    properties: {
      Status: { type: 'boolean', description: 'true: active again; false: disabled.' },
      Group: {
        type: ['string', 'null'],
        maxLength: 64,
        pattern: '^[A-Za-z0-9_.:-]*$',
        description: 'null or "" removes it.',
      },
    },
  },
  UserInfo: closed('The caller’s own account, as the balance page reads it.', {
    id: accountId,
    level,
    child: count,
    name: { type: 'string' },
    alias: { type: 'string' },
    email: { type: 'string' },
    create_at: isoTime,
    credit_balance: {
      type: 'array',
      description: 'Live cards only, earliest expiry first.',
      items: closed('A live card.', {
        amount: usd,
        balance: usd,
        granted_at: isoTime,
        expires_at: isoTime,
      }),
    },
    credit_used: usd,
    balance: { ...usd, description: `Σ live cards; ${MAX_USD} for root.` },
    unlimited: { type: 'boolean', description: 'true for root.' },
    daily_usage: ref('UsageWindow'),
    monthly_usage: ref('UsageWindow'),
    hard_limit: usd,
    soft_limit: usd,
    rate_limit: { type: 'integer', minimum: 1 },
    rates,
    status: { type: 'boolean' },
  }),
  BillingUsage: closed('OpenAI’s legacy daily costs, in cents.', {
    object: { const: 'list' },
    daily_costs: {
      type: 'array',
      description: 'Every day of the range, days without usage with empty `line_items`.',
      items: closed('One day.', {
        timestamp: { type: 'integer', description: 'Unix seconds of 00:00 of the day in TZ.' },
        line_items: {
          type: 'array',
          items: closed('One model, sorted by name.', {
            name: { type: 'string' },
            cost: { type: 'number', description: 'Cents.' },
          }),
        },
      }),
    },
    total_usage: { type: 'number', description: 'Cents.' },
  }),
  BillingSubscription: closed('OpenAI’s legacy limits.', {
    object: { const: 'billing_subscription' },
    has_payment_method: { const: false },
    canceled: { const: false },
    canceled_at: { type: 'null' },
    delinquent: { type: 'null' },
    access_until: { ...count, description: 'Latest card expiry, unix seconds (0 without cards).' },
    soft_limit: usd,
    hard_limit: usd,
    system_hard_limit: usd,
    soft_limit_usd: usd,
    hard_limit_usd: { ...usd, description: 'What this month can still reach.' },
    system_hard_limit_usd: { ...usd, description: 'The HardLimit.' },
    plan: closed('The plan.', { title: { type: 'string' }, id: { type: 'string' } }),
    account_name: { type: 'string' },
    po_number: { type: 'null' },
    billing_email: { type: 'string' },
    tax_ids: { type: 'null' },
    billing_address: { type: 'null' },
    business_address: { type: 'null' },
  }),
  CreditSummary: closed('OpenAI’s legacy credit grants: one per live card.', {
    object: { const: 'credit_summary' },
    total_granted: usd,
    total_used: usd,
    total_available: usd,
    grants: closed('The live cards, earliest expiry first.', {
      object: { const: 'list' },
      data: {
        type: 'array',
        items: closed('One card.', {
          object: { const: 'credit_grant' },
          id: { type: 'string', pattern: '^cg_' },
          grant_amount: usd,
          used_amount: usd,
          effective_at: { type: 'integer', description: 'Unix seconds.' },
          expires_at: { type: 'integer', description: 'Unix seconds.' },
        }),
      },
    }),
  }),
  RequestLogRow: closed(
    'One request of the log.',
    {
      object: { const: 'request' },
      request_id: { type: 'string' },
      created_at: isoTime,
      created: { type: 'integer', description: 'Epoch milliseconds.' },
      account_id: accountId,
      account_name: { ...nullableString, description: 'null once the account is deleted.' },
      endpoint: { type: 'string' },
      model: { type: 'string', description: '"" when the request names none.' },
      stream: { type: 'boolean' },
      prompt_tokens: count,
      cached_tokens: count,
      completion_tokens: count,
      reasoning_tokens: count,
      images: count,
      audio_seconds: { type: 'number', minimum: 0 },
      characters: count,
      cost: { type: 'number', description: 'USD charged to that account, at its own Rates.' },
      cost_micros: { type: 'integer', description: 'The same in micro-dollars.' },
      rates: { type: 'number', description: 'That account’s Rates when charged.' },
      cost_at_caller_rates: {
        type: 'number',
        description: 'Only on rows of another account than the caller: the cost at the caller’s Rates.',
      },
      outcome: { enum: OUTCOMES },
      error_code: nullableString,
      status: { type: 'integer' },
      latency_ms: { type: ['integer', 'null'], minimum: 0 },
      ttfb_ms: { type: ['integer', 'null'], minimum: 0 },
      attempts: count,
      client_ip: nullableString,
      usage_source: { enum: ['upstream', 'tokenizer', 'none', 'gate'] },
    },
    ['cost_at_caller_rates'],
  ),
  Readiness: {
    type: 'object',
    description: 'Readiness and the checks behind it.',
    required: ['status', 'store', 'upstream_keys'],
    additionalProperties: false,
    properties: {
      status: { enum: ['ready', 'not ready'] },
      instance: { type: 'string', description: 'This instance’s id, with several instances.' },
      store: { type: 'boolean' },
      upstream_keys: { type: 'boolean' },
      journal: { const: false, description: 'Present when the journal cannot be written.' },
      redis: { type: 'boolean', description: 'With several instances.' },
      leases: { const: false, description: 'Present while leased credit is fenced.' },
      reasons: { type: 'array', items: { type: 'string' }, minItems: 1 },
    },
  },
};

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/** `security: []`: the route needs no key (it overrides the document's default bearer). */
const publicRoute = [] as const;

function keysPaths(): Record<string, PathItemObject> {
  const root: readonly ErrorName[] = [...AUTH, 'root_only', 'internal'];
  return {
    '/x-keys': {
      summary: 'The upstream key pool (root only).',
      get: {
        operationId: 'listKeys',
        summary: 'List the upstream keys, masked',
        tags: ['Upstream keys'],
        responses: { ...ok('The pool.', { type: 'array', items: ref('Key') }), ...errors(root) },
      },
      post: {
        operationId: 'addKey',
        summary: 'Add an upstream key; it serves the next request',
        tags: ['Upstream keys'],
        requestBody: { required: true, content: json(ref('KeyCreate')) },
        responses: {
          ...ok('Added.', closed('Added.', { Action: { const: 'add' }, Key: ref('Key') })),
          ...errors([...root, ...BODY, 'duplicate']),
        },
      },
      'x-other-methods': {
        description: 'Other methods are refused.',
        responses: errors([...root, 'method_not_allowed']),
      },
    },
    '/x-keys/{ID}': {
      summary: 'One upstream key (root only).',
      parameters: [keyIdParam],
      get: {
        operationId: 'getKey',
        summary: 'One key, as in the list',
        tags: ['Upstream keys'],
        responses: { ...ok('The key.', ref('Key')), ...errors([...root, 'not_found', 'key_not_found']) },
      },
      put: {
        operationId: 'updateKey',
        summary: 'Enable, disable or regroup a key',
        tags: ['Upstream keys'],
        requestBody: { required: true, content: json(ref('KeyChange')) },
        responses: {
          ...ok('Changed.', closed('Changed.', { Action: { const: 'update' }, Key: ref('Key') })),
          ...errors([...root, ...BODY, 'not_found', 'key_not_found']),
        },
      },
      post: {
        operationId: 'updateKeyPost',
        summary: 'The same as PUT',
        tags: ['Upstream keys'],
        requestBody: { required: true, content: json(ref('KeyChange')) },
        responses: {
          ...ok('Changed.', closed('Changed.', { Action: { const: 'update' }, Key: ref('Key') })),
          ...errors([...root, ...BODY, 'not_found', 'key_not_found']),
        },
      },
      delete: {
        operationId: 'deleteKey',
        summary: 'Remove a key from the pool and storage',
        tags: ['Upstream keys'],
        responses: {
          ...ok('Removed.', closed('Removed.', { Action: { const: 'delete' }, ID: { type: 'integer' } })),
          ...errors([...root, 'not_found', 'key_not_found']),
        },
      },
      'x-other-methods': {
        description: 'Other methods are refused.',
        responses: errors([...root, 'not_found', 'method_not_allowed']),
      },
    },
  };
}

/** The errors every /x-users and /x-dna call can meet once authenticated. */
const USERS_BASE: readonly ErrorName[] = [...AUTH, 'api_balance_too_low', 'internal', 'store_unavailable'];

function usersPaths(): Record<string, PathItemObject> {
  const refused = (allow: string): OtherMethodsObject => ({
    description: `Only ${allow}; other methods answer 405 with an \`Allow\` header.`,
    responses: errors([...AUTH, 'invalid_value', 'method_not_allowed', 'internal'], { 405: allowHeader }),
  });
  const list = (kind: 'x-users' | 'x-dna'): OperationObject => ({
    operationId: kind === 'x-users' ? 'listChildren' : 'listDescendants',
    summary:
      kind === 'x-users'
        ? 'Direct children, newest first, or one of them (costs $0.002 to a non-root caller when listing)'
        : 'All descendants, newest first, or one of them',
    tags: ['Sub-accounts'],
    parameters: listingParams,
    responses: {
      ...ok('A page of the listing (with paging headers), or a one-element lookup.', ref('UserList'), {
        ...pagingHeaders,
      }),
      ...errors([
        ...USERS_BASE,
        'invalid_value',
        'account_not_found',
        ...(kind === 'x-users' ? (['insufficient_balance'] as const) : []),
      ]),
    },
  });
  const one = (kind: 'x-users' | 'x-dna'): OperationObject => ({
    operationId: kind === 'x-users' ? 'getChild' : 'getDescendant',
    summary: kind === 'x-users' ? 'One direct child' : 'One descendant',
    tags: ['Sub-accounts'],
    responses: {
      ...ok('A one-element array.', { type: 'array', items: ref('User'), minItems: 1, maxItems: 1 }),
      ...errors([...USERS_BASE, 'invalid_value', 'account_not_found']),
    },
  });
  return {
    '/x-users': {
      summary: 'The caller’s direct children.',
      get: list('x-users'),
      post: {
        operationId: 'createChild',
        summary: 'Create a sub-account funded by the caller',
        tags: ['Sub-accounts'],
        requestBody: {
          description: 'Parsed as JSON whatever the Content-Type.',
          required: true,
          content: json(ref('UserCreate')),
        },
        responses: {
          ...ok('Created.', ref('UserCreated'), warningHeader),
          ...errors([...USERS_BASE, ...BODY, 'insufficient_balance', 'duplicate', 'conflict']),
        },
      },
      'x-other-methods': refused('GET and POST'),
    },
    '/x-users/{ident}': {
      summary: 'One descendant of the caller (or the caller itself, for Alias and BillingEmail).',
      parameters: [identParam],
      get: one('x-users'),
      put: {
        operationId: 'updateAccount',
        summary: 'Recharge, take back, change limits, rules or names',
        tags: ['Sub-accounts'],
        requestBody: {
          description: 'Parsed as JSON whatever the Content-Type.',
          required: true,
          content: json(ref('UserUpdate')),
        },
        responses: {
          ...ok('Changed.', ref('UserUpdated'), warningHeader),
          ...errors([
            ...USERS_BASE,
            ...BODY,
            'insufficient_balance',
            'not_ancestor',
            'account_not_found',
            'duplicate',
          ]),
        },
      },
      delete: {
        operationId: 'deleteChild',
        summary: 'Delete a direct child; its credit goes back to the caller',
        tags: ['Sub-accounts'],
        responses: {
          ...ok('Deleted.', ref('UserDeleted')),
          ...errors([...USERS_BASE, 'invalid_value', 'forbidden', 'account_not_found', 'conflict']),
        },
      },
      'x-other-methods': refused('GET, PUT and DELETE'),
    },
    '/x-dna': {
      summary: 'Every descendant of the caller, at any depth.',
      get: list('x-dna'),
      'x-other-methods': refused('GET'),
    },
    '/x-dna/{ident}': {
      summary: 'One descendant of the caller.',
      parameters: [identParam],
      get: one('x-dna'),
      'x-other-methods': refused('GET'),
    },
  };
}

function logsPaths(): Record<string, PathItemObject> {
  const param = (name: string, description: string, schema: JsonSchema): ParameterObject => ({
    name,
    in: 'query',
    description,
    schema,
  });
  const instant: JsonSchema = {
    type: 'string',
    description: 'ISO 8601 (a date, or a time with Z or an offset) or epoch milliseconds.',
  };
  const int = (description: string, minimum: number): HeaderObject => ({
    description,
    schema: { type: 'integer', minimum },
  });
  const parameters: readonly ParameterObject[] = [
    param('from', 'Start of the range (inclusive).', instant),
    param('to', 'End of the range (exclusive).', instant),
    param('account', 'An account ident: the caller or one of its descendants.', { type: 'string' }),
    param('descendants', 'Include the account’s descendants (default true).', { type: 'boolean' }),
    param('model', 'Exact model name.', { type: 'string' }),
    param('outcome', `Comma list of: ${OUTCOMES.join(', ')}.`, { type: 'string' }),
    param('min_cost', 'USD: rows whose cost is at least this.', { type: 'number', minimum: 0 }),
    param('size', 'Rows per page, 1–1000 (100).', { type: 'integer', minimum: 1, maximum: 1000 }),
    param('cursor', 'The previous page’s `x-next-cursor`.', { type: 'string' }),
    param('count', 'true: also send `x-total-count` and `x-total-pages`.', { type: 'boolean' }),
    param('format', '`csv`: a CSV export (the same as `Accept: text/csv`).', { enum: ['csv'] }),
  ];
  const responses: ResponsesObject = {
    '200': {
      description:
        'JSON: a page of rows with paging headers. CSV: every matching row (no paging; `cursor` is a starting point), streamed.',
      headers: {
        'x-page': int('This page, counted along the cursor chain (JSON).', 1),
        'x-per-page': int('Rows per page (JSON).', 1),
        'x-next-cursor': {
          description: 'Cursor of the next page (JSON); absent on the last.',
          schema: { type: 'string', minLength: 1 },
        },
        link: {
          description: '`</x-logs?…&cursor=…>; rel="next"` (JSON); absent on the last page.',
          schema: { type: 'string', pattern: '^</x-logs\\?.*>; rel="next"$' },
        },
        'x-total-count': int('Rows matching the filter (with `count=true`).', 0),
        'x-total-pages': int('Pages (with `count=true`).', 0),
        'content-disposition': {
          description: 'CSV: the file name.',
          schema: { const: 'attachment; filename="requests.csv"' },
        },
      },
      content: {
        [JSON_TYPE]: { schema: { type: 'array', items: ref('RequestLogRow') } },
        'text/csv': {
          schema: {
            type: 'string',
            description: 'A header line, then one line per row; empty cell for null, cost in USD.',
            pattern: `^${REQUEST_LOG_CSV_COLUMNS.join(',')}\\r\\n`,
          },
        },
      },
    },
    ...errors([...AUTH, 'invalid_value', 'internal']),
  };
  return {
    '/x-logs': {
      summary: 'The request log of the caller and its descendants (root: every account).',
      get: {
        operationId: 'listRequests',
        summary: 'Requests, newest first, as JSON pages or one CSV export',
        tags: ['Request log'],
        parameters,
        responses,
      },
      head: {
        operationId: 'listRequestsHead',
        summary: 'The headers GET would answer',
        tags: ['Request log'],
        parameters,
        responses,
      },
      'x-other-methods': {
        description: 'Only GET and HEAD; other methods answer 405 with `Allow: GET, HEAD`.',
        responses: errors([...AUTH, 'method_not_allowed', 'internal'], { 405: allowHeader }),
      },
    },
  };
}

function dashboardPaths(prefix: '' | '/v1'): Record<string, PathItemObject> {
  const id = (name: string): string => (prefix === '' ? name : `${name}V1`);
  const also =
    prefix === ''
      ? 'Also under `/v1`.'
      : 'The same as without `/v1`, for clients whose base URL ends in /v1.';
  const base: readonly ErrorName[] = [...AUTH, 'internal', 'store_unavailable'];
  const refused: OtherMethodsObject = {
    description: 'Only GET; other methods answer 405 with `Allow: GET`.',
    responses: errors([...AUTH, 'method_not_allowed', 'internal'], { 405: allowHeader }),
  };
  const get = (
    operationId: string,
    summary: string,
    schema: JsonSchema,
    extra: readonly ErrorName[] = [],
  ) => ({
    get: {
      operationId: id(operationId),
      summary,
      description: also,
      tags: ['Dashboard'],
      ...(operationId === 'billingUsage' && {
        parameters: [
          {
            name: 'start_date',
            in: 'query',
            required: true,
            description: 'First day (YYYY-MM-DD, a day of TZ).',
            schema: { type: 'string', format: 'date' },
          },
          {
            name: 'end_date',
            in: 'query',
            required: true,
            description: `Day after the last one (exclusive); at most ${MAX_RANGE_DAYS} days after start_date.`,
            schema: { type: 'string', format: 'date' },
          },
        ] satisfies ParameterObject[],
      }),
      responses: { ...ok('The caller’s own account.', schema, noStore), ...errors([...base, ...extra]) },
    },
    'x-other-methods': refused,
  });
  return {
    [`${prefix}/dashboard/x_user/info`]: get(
      'userInfo',
      'The caller’s balance, cards and usage',
      ref('UserInfo'),
    ),
    [`${prefix}/dashboard/billing/usage`]: get(
      'billingUsage',
      'Daily costs per model (OpenAI legacy shape, cents)',
      ref('BillingUsage'),
      ['invalid_value'],
    ),
    [`${prefix}/dashboard/billing/subscription`]: get(
      'billingSubscription',
      'Limits (OpenAI legacy shape)',
      ref('BillingSubscription'),
    ),
    [`${prefix}/dashboard/billing/credit_grants`]: get(
      'creditGrants',
      'Credit cards (OpenAI legacy shape)',
      ref('CreditSummary'),
    ),
  };
}

function operationsPaths(): Record<string, PathItemObject> {
  const health = ok('The process serves requests.', closed('Alive.', { status: { const: 'ok' } }));
  const ready: ResponsesObject = {
    '200': {
      description: 'Ready: the store answers and an upstream key is usable.',
      content: json(ref('Readiness')),
    },
    '503': { description: 'Not ready, or draining.', content: json(ref('Readiness')) },
    ...errors(['internal']),
  };
  const notRouted: OtherMethodsObject = {
    description: 'Other methods are not routed: 404 `not_found`.',
    responses: errors(['not_found']),
  };
  const documentSchema: JsonSchema = {
    type: 'object',
    required: ['openapi', 'info', 'paths', 'components'],
    properties: {
      openapi: { const: '3.1.0' },
      info: { type: 'object' },
      paths: { type: 'object' },
      components: { type: 'object' },
    },
  };
  const documentResponses: ResponsesObject = ok('This document.', documentSchema);
  return {
    '/healthz': {
      summary: 'Liveness.',
      get: {
        operationId: 'healthz',
        summary: 'Liveness: 200 while the process serves requests',
        tags: ['Operations'],
        security: publicRoute,
        responses: health,
      },
      'x-other-methods': { description: 'Any method answers as GET.', responses: health },
    },
    '/readyz': {
      summary: 'Readiness, for load balancers.',
      get: {
        operationId: 'readyz',
        summary: 'Readiness: 200 when the store answers and a key is usable, else 503',
        tags: ['Operations'],
        security: publicRoute,
        responses: ready,
      },
      'x-other-methods': { description: 'Any method answers as GET.', responses: ready },
    },
    '/metrics': {
      summary: 'Prometheus metrics.',
      get: {
        operationId: 'metrics',
        summary: 'Metrics in the Prometheus text format',
        description:
          'No key needed unless METRICS_TOKEN is set: then `Authorization: Bearer <METRICS_TOKEN>`.',
        tags: ['Operations'],
        security: [{}, { metricsToken: [] }],
        responses: {
          '200': {
            description: 'Prometheus text exposition format.',
            content: {
              'text/plain': { schema: { type: 'string', pattern: '^# (HELP|TYPE) ' } },
            },
          },
          ...errors(['metrics_token_required', 'internal'], {
            401: {
              'www-authenticate': {
                description: 'METRICS_TOKEN is set and the request does not carry it.',
                required: true,
                schema: { const: 'Bearer realm="metrics"' },
              },
            },
          }),
        },
      },
      'x-other-methods': notRouted,
    },
    [OPENAPI_PATH]: {
      summary: 'This description.',
      get: {
        operationId: 'openapi',
        summary: 'This OpenAPI document',
        tags: ['Operations'],
        security: publicRoute,
        responses: documentResponses,
      },
      head: {
        operationId: 'openapiHead',
        summary: 'Headers of this OpenAPI document',
        tags: ['Operations'],
        security: publicRoute,
        responses: documentResponses,
      },
      'x-other-methods': notRouted,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The document
// ---------------------------------------------------------------------------------------------

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

export const OPENAPI_DOCUMENT: OpenApiDocument = deepFreeze({
  openapi: '3.1.0',
  info: {
    title: 'proxyxai gateway API',
    version: '1',
    summary: 'The gateway’s own routes: admin API, request log, dashboard, health and metrics.',
    description: [
      '`/v1/*` is OpenAI’s API, forwarded and metered: see OpenAI’s reference. This document describes every other route.',
      '',
      'Keys: a gateway key (`sk-Xvs…`) in `Authorization`, as `Bearer <key>` or bare. Every error has OpenAI’s shape (`Error`).',
      '',
      'CORS: a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) to any path is answered before routing, 204 when the origin is allowed, else 403, with an empty body. `x-other-methods` on a path gives the answers to the methods it does not list.',
    ].join('\n'),
    license: { name: 'MIT', identifier: 'MIT' },
  },
  jsonSchemaDialect: 'https://spec.openapis.org/oas/3.1/dialect/base',
  tags: [
    { name: 'Upstream keys', description: 'The pool of upstream OpenAI keys (root only).' },
    { name: 'Sub-accounts', description: 'The account tree: create, fund, limit, list and delete.' },
    { name: 'Request log', description: 'Every request, with tokens, cost and outcome.' },
    { name: 'Dashboard', description: 'The caller’s own balance and usage, also in OpenAI’s legacy shapes.' },
    { name: 'Operations', description: 'Health, readiness, metrics and this document (no key).' },
  ],
  security: [{ bearer: [] }],
  paths: {
    ...keysPaths(),
    ...usersPaths(),
    ...logsPaths(),
    ...dashboardPaths(''),
    ...dashboardPaths('/v1'),
    ...operationsPaths(),
  },
  components: {
    securitySchemes: {
      bearer: {
        type: 'http',
        scheme: 'bearer',
        description:
          'A gateway key: `sk-Xvs` + 45 letters and digits, the root key or a sub-account’s. The bare key (without `Bearer`) is accepted too.',
      },
      metricsToken: {
        type: 'http',
        scheme: 'bearer',
        description: 'METRICS_TOKEN, when set.',
      },
    },
    schemas,
  },
});
