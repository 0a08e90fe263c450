/**
 * Holds the gateway to its OpenAPI description (src/openapi/openapi-document.ts): every answer the
 * end-to-end tests provoke on a described route is validated against the operation's response
 * (status, content type, documented headers, body schema), so the build fails the day the code
 * and the description drift apart.
 *
 * `watchOpenApi(server)` captures the answers of a node:http server (a prepended 'request'
 * listener wraps writeHead/write/end: nothing changes for the gateway itself) and checks each one
 * when it has finished; `checkResponse` is the check alone, for unit tests.
 *
 * Not checked: `/v1/*` except `/v1/dashboard/*` (OpenAI's API, not described here), the static
 * pages, CORS preflights (answered before routing, for any path), a 404 for a path the document
 * does not describe (an unknown route), and answers cut short (the client left). Anything else on
 * a path, method or status that the document does not describe is a violation.
 *
 * The validators are compiled with ajv (JSON Schema 2020-12) once per process, lazily: only the
 * response schemas that real answers reach are compiled.
 */
import { readdirSync } from 'node:fs';
import type { IncomingMessage, OutgoingHttpHeaders, Server, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsPlugin from 'ajv-formats';
import {
  HTTP_METHODS,
  OPENAPI_DOCUMENT,
  type HttpMethod,
  type JsonSchema,
  type OpenApiDocument,
  type PathItemObject,
  type ResponseObject,
  type ResponsesObject,
} from '../../src/openapi/openapi-document.js';

/** One answer as the client received it (the body before any transfer encoding). */
export interface CapturedResponse {
  readonly method: string;
  /** Path and query, as requested. */
  readonly url: string;
  readonly status: number;
  /** Lower-case names. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
  /** A CORS preflight: OPTIONS with Origin and Access-Control-Request-Method. */
  readonly preflight?: boolean;
}

export interface Violation {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  readonly problems: readonly string[];
}

export interface CheckOptions {
  /** The document to check against (the gateway's by default). */
  readonly document?: OpenApiDocument;
  /** True for a path the static pages serve (not described; skipped on GET and HEAD). */
  readonly isStatic?: (pathname: string) => boolean;
}

// ajv-formats is CommonJS: under NodeNext its default import is the module, whose `default` is the plugin.
const addFormats = addFormatsPlugin.default;

/** The document's id inside ajv; response schemas are compiled by JSON pointer into it. */
const DOC_ID = 'https://proxyxai.invalid/openapi.json';

/**
 * The OpenAPI document's own top-level fields: no-op keywords to ajv, so the whole document can
 * be added as one schema and `#/components/schemas/…` references resolve inside it.
 */
const DOCUMENT_KEYWORDS = [
  'openapi',
  'info',
  'jsonSchemaDialect',
  'servers',
  'paths',
  'webhooks',
  'components',
  'security',
  'tags',
  'externalDocs',
];

interface Validators {
  readonly body: Ajv2020;
  /**
   * By the schema's text: the same error answer is described under many operations, and
   * compiling it once instead of once per place keeps the first answers of a test file cheap.
   */
  readonly bodyCache: Map<string, ValidateFunction>;
  /** Header values are strings on the wire: this one coerces "12" to 12 for integer schemas. */
  readonly header: Ajv2020;
  readonly headerCache: WeakMap<JsonSchema, ValidateFunction>;
}

const validatorsByDocument = new WeakMap<OpenApiDocument, Validators>();

function newAjv(coerceTypes: boolean): Ajv2020 {
  // strict: a schema mistake in the document (an unknown keyword, a type-less `required`) throws
  // when compiled instead of silently validating nothing.
  const ajv = new Ajv2020({ strict: true, allowUnionTypes: true, allErrors: true, coerceTypes });
  addFormats(ajv);
  return ajv;
}

function validators(document: OpenApiDocument): Validators {
  let v = validatorsByDocument.get(document);
  if (v === undefined) {
    const body = newAjv(false);
    body.addVocabulary(DOCUMENT_KEYWORDS);
    // Not meta-validated here (it costs every test file a compile of the meta-schema): the unit
    // test validates the document against the official OpenAPI 3.1 schema.
    body.addSchema(document as unknown as JsonSchema, DOC_ID, undefined, false);
    v = { body, bodyCache: new Map(), header: newAjv(true), headerCache: new WeakMap() };
    validatorsByDocument.set(document, v);
  }
  return v;
}

/** RFC 6901 escaping of one pointer segment, percent-encoded for the URI fragment. */
function segment(s: string): string {
  return encodeURIComponent(s.replace(/~/g, '~0').replace(/\//g, '~1'));
}

/** The compiled validator of the schema at `pointer` (segments) inside the document. */
export function schemaValidator(document: OpenApiDocument, pointer: readonly string[]): ValidateFunction {
  let schema: unknown = document;
  for (const s of pointer) {
    schema =
      typeof schema === 'object' && schema !== null ? (schema as Record<string, unknown>)[s] : undefined;
  }
  if (typeof schema !== 'object' || schema === null) throw new Error(`no schema at ${pointer.join(' › ')}`);
  const v = validators(document);
  // Every $ref in the document points into components, so equal text means an equal validator.
  const text = JSON.stringify(schema);
  let fn = v.bodyCache.get(text);
  if (fn === undefined) {
    fn = v.body.getSchema(`${DOC_ID}#/${pointer.map(segment).join('/')}`);
    if (fn === undefined) throw new Error(`no schema at ${pointer.join(' › ')}`);
    v.bodyCache.set(text, fn);
  }
  return fn;
}

function headerValidator(document: OpenApiDocument, schema: JsonSchema): ValidateFunction {
  const v = validators(document);
  let fn = v.headerCache.get(schema);
  if (fn === undefined) {
    fn = v.header.compile(schema);
    v.headerCache.set(schema, fn);
  }
  return fn;
}

interface Template {
  readonly path: string;
  readonly item: PathItemObject;
  readonly pattern: RegExp;
  /** Templates without parameters win over templated ones (OpenAPI's matching rule). */
  readonly concrete: boolean;
}

const templatesByDocument = new WeakMap<OpenApiDocument, readonly Template[]>();

function templates(document: OpenApiDocument): readonly Template[] {
  let list = templatesByDocument.get(document);
  if (list === undefined) {
    list = Object.entries(document.paths)
      .map(([path, item]) => {
        const source = path
          .split(/(\{[^}]+\})/)
          .map((part) =>
            part.startsWith('{') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, (c) => `\\${c}`),
          )
          .join('');
        return { path, item, pattern: new RegExp(`^${source}$`), concrete: !path.includes('{') };
      })
      .sort((a, b) => Number(b.concrete) - Number(a.concrete));
    templatesByDocument.set(document, list);
  }
  return list;
}

function matchPath(document: OpenApiDocument, pathname: string): Template | undefined {
  return templates(document).find((t) => t.pattern.test(pathname));
}

function isMethod(m: string): m is HttpMethod {
  return (HTTP_METHODS as readonly string[]).includes(m);
}

function formatErrors(errors: readonly ErrorObject[] | null | undefined): string[] {
  return (errors ?? [])
    .slice(0, 12)
    .map(
      (e) =>
        `${e.instancePath === '' ? '(root)' : e.instancePath} ${e.message ?? ''} ${JSON.stringify(e.params)}`,
    );
}

function isJsonMedia(media: string): boolean {
  return media === 'application/json' || media.endsWith('+json');
}

/**
 * Checks one answer against the document. Returns the problems (empty: it conforms), or
 * `undefined` when the answer is not the document's business (see the file comment).
 */
export function checkResponse(r: CapturedResponse, options: CheckOptions = {}): string[] | undefined {
  const document = options.document ?? OPENAPI_DOCUMENT;
  const q = r.url.indexOf('?');
  const pathname = q < 0 ? r.url : r.url.slice(0, q);
  if (pathname.startsWith('/v1/') && !pathname.startsWith('/v1/dashboard/')) return undefined;
  if (r.preflight === true) return undefined;
  const method = r.method.toLowerCase();
  const template = matchPath(document, pathname);
  if (template === undefined) {
    if (r.status === 404) return undefined;
    if ((method === 'get' || method === 'head') && options.isStatic?.(pathname) === true) return undefined;
    return [
      `the path is described nowhere, yet it answered ${r.status} (only 404 may answer an unknown route)`,
    ];
  }
  const operation = isMethod(method) ? template.item[method] : undefined;
  const responses: ResponsesObject = operation?.responses ?? template.item['x-other-methods'].responses;
  const where = [
    'paths',
    template.path,
    operation !== undefined ? method : 'x-other-methods',
    'responses',
    String(r.status),
  ];
  const response: ResponseObject | undefined = responses[String(r.status)];
  if (response === undefined) {
    return [
      `status ${r.status} is not described for ${r.method} ${template.path} (described: ${Object.keys(responses).join(', ')})`,
    ];
  }
  const problems: string[] = [];
  for (const [name, header] of Object.entries(response.headers ?? {})) {
    const value = r.headers[name.toLowerCase()];
    if (value === undefined) {
      if (header.required === true) problems.push(`header ${name} is required but absent`);
      continue;
    }
    const validate = headerValidator(document, header.schema);
    if (!validate(value)) {
      problems.push(`header ${name}: ${JSON.stringify(value)}: ${formatErrors(validate.errors).join('; ')}`);
    }
  }
  const contentType = r.headers['content-type'];
  if (response.content === undefined) {
    if (r.body.length > 0) problems.push(`a body of ${r.body.length} bytes where the description has none`);
    return problems;
  }
  // A HEAD answer carries no body: its status and headers are all there is to check.
  if (r.body.length === 0 && r.method.toUpperCase() === 'HEAD') return problems;
  if (contentType === undefined) {
    problems.push('no content-type');
    return problems;
  }
  const media = (contentType.split(';')[0] ?? '').trim().toLowerCase();
  if (response.content[media] === undefined) {
    problems.push(
      `content-type ${contentType} is not described (described: ${Object.keys(response.content).join(', ')})`,
    );
    return problems;
  }
  const text = r.body.toString('utf8');
  let value: unknown = text;
  if (isJsonMedia(media)) {
    try {
      value = JSON.parse(text);
    } catch {
      problems.push(`the body is not JSON: ${JSON.stringify(text.slice(0, 200))}`);
      return problems;
    }
  }
  const validate = schemaValidator(document, [...where, 'content', media, 'schema']);
  if (!validate(value)) {
    problems.push(...formatErrors(validate.errors));
    problems.push(`body: ${text.length > 600 ? `${text.slice(0, 600)}…` : text}`);
  }
  return problems;
}

/** Bodies larger than this are not kept (nor checked): a long CSV export or metrics page. */
const MAX_CAPTURE_BYTES = 4 * 1024 * 1024;

export interface OpenApiWatch {
  readonly violations: readonly Violation[];
  /** Answers checked against the document so far. */
  readonly checked: number;
  /** Throws with every violation, method, path, status and problems, if there is any. */
  assertConforms(): void;
}

type WriteHead = ServerResponse['writeHead'];
type Write = ServerResponse['write'];
type End = ServerResponse['end'];

function toBuffer(chunk: unknown, encoding: unknown): Buffer | undefined {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === 'string')
    return Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  return undefined;
}

function headerText(value: OutgoingHttpHeaders[string]): string | undefined {
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(', ') : String(value);
}

/** Headers given to writeHead as an object or a flat / nested array. */
function writeHeadHeaders(args: readonly unknown[]): Record<string, string> {
  const raw = typeof args[1] === 'string' ? args[2] : args[1];
  const out: Record<string, string> = {};
  if (Array.isArray(raw)) {
    const pairs: unknown[][] = Array.isArray(raw[0])
      ? (raw as unknown[][])
      : Array.from({ length: raw.length / 2 }, (_, i) => [raw[2 * i], raw[2 * i + 1]]);
    for (const [k, v] of pairs) if (typeof k === 'string') out[k.toLowerCase()] = String(v);
  } else if (typeof raw === 'object' && raw !== null) {
    for (const [k, v] of Object.entries(raw as OutgoingHttpHeaders)) {
      const text = headerText(v);
      if (text !== undefined) out[k.toLowerCase()] = text;
    }
  }
  return out;
}

/** The pages' top-level entries: a GET below one of them is a static file, not an API route. */
function staticPaths(pagesDir: string): (pathname: string) => boolean {
  let entries: Set<string>;
  try {
    entries = new Set(readdirSync(pagesDir));
  } catch {
    entries = new Set();
  }
  return (pathname) => pathname === '/' || entries.has(pathname.split('/')[1] ?? '');
}

const DEFAULT_PAGES_DIR = fileURLToPath(new URL('../../pages/', import.meta.url));

/** Captures and checks every answer of `server` (see the file comment). */
export function watchOpenApi(
  server: Server,
  options: { readonly pagesDir?: string | undefined; readonly document?: OpenApiDocument } = {},
): OpenApiWatch {
  const violations: Violation[] = [];
  let checked = 0;
  const isStatic = staticPaths(options.pagesDir ?? DEFAULT_PAGES_DIR);
  const checkOptions: CheckOptions = {
    isStatic,
    ...(options.document !== undefined && { document: options.document }),
  };

  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const pathname = q < 0 ? url : url.slice(0, q);
    // The hot /v1 traffic (streams included) is not the document's: leave it untouched.
    if (pathname.startsWith('/v1/') && !pathname.startsWith('/v1/dashboard/')) return;
    const method = req.method ?? 'GET';
    const preflight =
      method === 'OPTIONS' &&
      req.headers.origin !== undefined &&
      req.headers['access-control-request-method'] !== undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    let headHeaders: Record<string, string> = {};
    const keep = (chunk: unknown, encoding: unknown): void => {
      const b = toBuffer(chunk, encoding);
      if (b === undefined || b.length === 0 || size > MAX_CAPTURE_BYTES) return;
      size += b.length;
      chunks.push(b);
    };
    const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => ServerResponse;
    const write = res.write.bind(res) as (...args: unknown[]) => boolean;
    const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
    res.writeHead = ((...args: unknown[]) => {
      headHeaders = { ...headHeaders, ...writeHeadHeaders(args) };
      return writeHead(...args);
    }) as WriteHead;
    res.write = ((...args: unknown[]) => {
      keep(args[0], args[1]);
      return write(...args);
    }) as Write;
    res.end = ((...args: unknown[]) => {
      if (typeof args[0] !== 'function') keep(args[0], args[1]);
      return end(...args);
    }) as End;
    res.once('finish', () => {
      // Too large to keep whole: its status and headers were still sent, but not checked here.
      if (size > MAX_CAPTURE_BYTES) return;
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(res.getHeaders())) {
        const text = headerText(v);
        if (text !== undefined) headers[k.toLowerCase()] = text;
      }
      const captured: CapturedResponse = {
        method,
        url,
        status: res.statusCode,
        headers: { ...headers, ...headHeaders },
        body: Buffer.concat(chunks, size),
        preflight,
      };
      let problems: string[] | undefined;
      try {
        problems = checkResponse(captured, checkOptions);
      } catch (err: unknown) {
        // A broken description (a schema that does not compile) is a violation too, not a crash.
        problems = [`the check itself failed: ${err instanceof Error ? err.message : String(err)}`];
      }
      if (problems === undefined) return;
      checked++;
      if (problems.length > 0) violations.push({ method, path: url, status: res.statusCode, problems });
    });
  });

  return {
    violations,
    get checked() {
      return checked;
    },
    assertConforms() {
      if (violations.length === 0) return;
      throw new Error(formatViolations(violations));
    },
  };
}

export function formatViolations(violations: readonly Violation[]): string {
  const lines = violations.map(
    (v) => `${v.method} ${v.path} → ${v.status}\n${v.problems.map((p) => `    ${p}`).join('\n')}`,
  );
  return `${violations.length} answer(s) disagree with the OpenAPI description (src/openapi/openapi-document.ts):\n${lines.join('\n')}`;
}
