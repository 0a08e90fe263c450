/**
 * A deliberately fast mock of the OpenAI upstream for the benchmarks (not the programmable test
 * mock): `POST /v1/chat/completions` answers a small canned chat.completion with `usage`, or with
 * `"stream":true` an SSE stream of N chunks, `"usage":null` on each chunk and a final usage chunk
 * when `stream_options.include_usage` is set, then `data: [DONE]`. Anything else is a 404.
 *
 * Runs as its own process (only node: imports, so the bench can transpile it to plain JS).
 * Env: PORT (required), MOCK_CHUNKS (default 50), MOCK_INTERVAL_MS (default 0). Per request the
 * query `?chunks=N&interval=MS` overrides both; interval 0 yields to the event loop between
 * chunks (setImmediate) so every chunk is still its own write.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

const PORT = Number(process.env['PORT'] ?? '0');
const DEFAULT_CHUNKS = Number(process.env['MOCK_CHUNKS'] ?? '50');
const DEFAULT_INTERVAL = Number(process.env['MOCK_INTERVAL_MS'] ?? '0');
const MODEL = 'gpt-4o-mini';
const CREATED = 1_700_000_000;

const COMPLETION = Buffer.from(
  JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    created: CREATED,
    model: MODEL,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: 'Hello! How can I help you today?', refusal: null },
        logprobs: null,
        finish_reason: 'stop',
      },
    ],
    usage: { prompt_tokens: 25, completion_tokens: 9, total_tokens: 34 },
    system_fingerprint: 'fp_bench',
  }),
);
const JSON_HEADERS = {
  'content-type': 'application/json',
  'content-length': String(COMPLETION.length),
  'openai-processing-ms': '1',
  'x-request-id': 'req_mock',
};
const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-request-id': 'req_mock',
};
const NOT_FOUND = Buffer.from('{"error":{"message":"not found","type":"invalid_request_error"}}');

function chunkEvent(i: number, last: boolean, withUsageNull: boolean): Buffer {
  const delta = i === 0 ? { role: 'assistant', content: 'tok ' } : last ? {} : { content: 'tok ' };
  const event: Record<string, unknown> = {
    id: 'chatcmpl-bench',
    object: 'chat.completion.chunk',
    created: CREATED,
    model: MODEL,
    system_fingerprint: 'fp_bench',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: last ? 'stop' : null }],
  };
  if (withUsageNull) event['usage'] = null;
  return Buffer.from(`data: ${JSON.stringify(event)}\n\n`);
}

function usageEvent(chunks: number): Buffer {
  const event = {
    id: 'chatcmpl-bench',
    object: 'chat.completion.chunk',
    created: CREATED,
    model: MODEL,
    system_fingerprint: 'fp_bench',
    choices: [],
    usage: { prompt_tokens: 25, completion_tokens: chunks, total_tokens: 25 + chunks },
  };
  return Buffer.from(`data: ${JSON.stringify(event)}\n\n`);
}

const DONE = Buffer.from('data: [DONE]\n\n');
// Pre-rendered events: chunk 0 (role), middle chunks, last chunk, with and without `usage:null`.
interface EventSet {
  readonly first: Buffer;
  readonly middle: Buffer;
  readonly last: Buffer;
}
const eventSet = (usageNull: boolean): EventSet => ({
  first: chunkEvent(0, false, usageNull),
  middle: chunkEvent(1, false, usageNull),
  last: chunkEvent(2, true, usageNull),
});
const EVENTS = { plain: eventSet(false), usage: eventSet(true) };

function stream(
  req: IncomingMessage,
  res: ServerResponse,
  chunks: number,
  interval: number,
  usage: boolean,
): void {
  res.writeHead(200, SSE_HEADERS);
  const set = usage ? EVENTS.usage : EVENTS.plain;
  let i = 0;
  let timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  let closed = false;
  res.once('close', () => {
    closed = true;
    if (timer !== undefined) {
      clearTimeout(timer as NodeJS.Timeout);
      clearImmediate(timer as NodeJS.Immediate);
    }
  });
  const next = (): void => {
    timer = undefined;
    if (closed) return;
    if (i < chunks) {
      const last = i === chunks - 1;
      res.write(i === 0 ? set.first : last ? set.last : set.middle);
      i++;
      timer = interval > 0 ? setTimeout(next, interval) : setImmediate(next);
      return;
    }
    if (usage) res.write(usageEvent(chunks));
    res.end(DONE);
  };
  next();
  void req;
}

function handle(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  if (path === '/healthz') {
    res.writeHead(200, { 'content-length': '2' });
    res.end('ok');
    return;
  }
  if (req.method !== 'POST' || path !== '/v1/chat/completions') {
    res.writeHead(404, { 'content-type': 'application/json', 'content-length': String(NOT_FOUND.length) });
    res.end(NOT_FOUND);
    return;
  }
  let parsed: { stream?: unknown; stream_options?: { include_usage?: unknown } };
  try {
    parsed = JSON.parse(body.toString('utf8')) as typeof parsed;
  } catch {
    res.writeHead(400, { 'content-type': 'application/json', 'content-length': '2' });
    res.end('{}');
    return;
  }
  if (parsed.stream !== true) {
    res.writeHead(200, JSON_HEADERS);
    res.end(COMPLETION);
    return;
  }
  const params = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
  const chunks = Math.max(1, Number(params.get('chunks') ?? DEFAULT_CHUNKS));
  const interval = Math.max(0, Number(params.get('interval') ?? DEFAULT_INTERVAL));
  stream(req, res, chunks, interval, parsed.stream_options?.include_usage === true);
}

const server = createServer({ keepAliveTimeout: 120_000, requestTimeout: 0 }, (req, res) => {
  const parts: Buffer[] = [];
  req.on('data', (c: Buffer) => parts.push(c));
  req.on('end', () => handle(req, res, parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts)));
});
server.listen({ port: PORT, host: '127.0.0.1', backlog: 8192 }, () => {
  process.stdout.write(`mock upstream listening on 127.0.0.1:${PORT}\n`);
});
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
});
