// A WebSocket-speaking mock of OpenAI's Realtime API for the end-to-end tests, attached to the mock
// upstream's HTTP server ('upgrade' on /v1/realtime). Handshakes are answered per upstream key (accept,
// 401 invalid key, 429, 500, a status of choice, or a dropped connection) and recorded. An accepted
// session speaks the GA event names, or the beta ones when the client sent `OpenAI-Beta: realtime=v1`,
// and its responses, usage and timing are scripted by a `ResponsePlan`. The end of the file has the
// client-side helpers the tests share (raw `ws` clients, refused upgrades, the SDK's plain socket).
// Like mock-upstream.ts it is one long file on purpose: a single fake of one external API.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { connect, type createConnection, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type ClientOptions, type RawData } from 'ws';
import { maskKeyLikeOpenAI, waitFor, type MockUpstream } from './mock-upstream.js';

type Json = Record<string, unknown>;

export type HandshakeBehaviour =
  | { kind: 'accept' }
  | { kind: 'invalid-key' }
  | { kind: 'rate-limited'; retryAfterSec?: number }
  | { kind: 'error500' }
  | { kind: 'status'; status: number; body: unknown }
  | { kind: 'drop' };

export interface RecordedHandshake {
  key: string | null;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  protocols: string[];
  behaviour: HandshakeBehaviour['kind'];
}

export interface ResponsePlan {
  /** `text`: text deltas; `audio`: audio and transcript deltas. */
  modality: 'text' | 'audio';
  /** Text (or transcript) pieces, one delta event each. */
  deltas: string[];
  /** Bytes of audio per audio delta. */
  audioBytes: number;
  /** `response.usage` of a completed response. */
  usage: Json;
  /** `response.usage` of a cancelled one. */
  cancelledUsage: Json;
  /** Stop after the deltas until `finish()` or a `response.cancel`. */
  hold: boolean;
  /** Whether a `response.cancel` is answered (with a cancelled `response.done`). */
  answerCancel: boolean;
  /** Usage of `conversation.item.input_audio_transcription.completed` (when transcription is on). */
  transcriptionUsage: Json;
  /** Start a response by itself after an audio commit, as server VAD does. */
  autoRespond: boolean;
  /** Refuse every `response.create` with an `error` naming its event id (an active response, say). */
  rejectCreate: boolean;
}

/** Text response: 1,200 input tokens (512 cached), 40 output tokens. */
export const TEXT_USAGE: Json = {
  total_tokens: 1240,
  input_tokens: 1200,
  output_tokens: 40,
  input_token_details: {
    text_tokens: 1200,
    audio_tokens: 0,
    image_tokens: 0,
    cached_tokens: 512,
    cached_tokens_details: { text_tokens: 512, audio_tokens: 0, image_tokens: 0 },
  },
  output_token_details: { text_tokens: 40, audio_tokens: 0 },
};

/** Audio response: input 300 text + 1,500 audio + 200 image (800 cached: 200 text, 600 audio); output 100 text + 400 audio. */
export const AUDIO_USAGE: Json = {
  total_tokens: 2500,
  input_tokens: 2000,
  output_tokens: 500,
  input_token_details: {
    text_tokens: 300,
    audio_tokens: 1500,
    image_tokens: 200,
    cached_tokens: 800,
    cached_tokens_details: { text_tokens: 200, audio_tokens: 600, image_tokens: 0 },
  },
  output_token_details: { text_tokens: 100, audio_tokens: 400 },
};

/** What a response cancelled after a few deltas reports. */
export const CANCELLED_USAGE: Json = {
  total_tokens: 1207,
  input_tokens: 1200,
  output_tokens: 7,
  input_token_details: { text_tokens: 1200, audio_tokens: 0, cached_tokens: 0 },
  output_token_details: { text_tokens: 7, audio_tokens: 0 },
};

/** Transcription by a token-priced model: 280 audio + 20 text tokens in, 50 out. */
export const TRANSCRIPTION_USAGE: Json = {
  type: 'tokens',
  total_tokens: 350,
  input_tokens: 300,
  output_tokens: 50,
  input_token_details: { text_tokens: 20, audio_tokens: 280 },
};

export const DEFAULT_PLAN: Readonly<ResponsePlan> = {
  modality: 'text',
  deltas: ['Hello', ' from', ' the', ' realtime', ' mock.'],
  audioBytes: 4800,
  usage: TEXT_USAGE,
  cancelledUsage: CANCELLED_USAGE,
  hold: false,
  answerCancel: true,
  transcriptionUsage: TRANSCRIPTION_USAGE,
  autoRespond: false,
  rejectCreate: false,
};

export interface MockRealtimeSession {
  readonly socket: WebSocket;
  readonly key: string | null;
  readonly beta: boolean;
  /** Client events received, parsed. */
  readonly received: Json[];
  /** Pings received from the gateway. */
  pings: number;
  /** Whether pings are answered (`false` simulates a dead upstream). */
  answerPings: boolean;
  /** Resolves with the close code and reason the mock saw. */
  readonly closed: Promise<{ code: number; reason: string }>;
  send(event: Json): void;
  /** Completes the held responses. */
  finish(): void;
  close(code: number, reason?: string): void;
  terminate(): void;
  /** Sends `count` frames of about `bytes` bytes each, as fast as `ws` accepts them. */
  flood(count: number, bytes: number): void;
}

export interface MockRealtime {
  readonly handshakes: RecordedHandshake[];
  readonly sessions: MockRealtimeSession[];
  setKey(key: string, b: HandshakeBehaviour): void;
  setDefault(b: HandshakeBehaviour): void;
  plan(p: Partial<ResponsePlan>): void;
  /** Waits for the `n`-th session (1-based) to open. */
  session(n: number): Promise<MockRealtimeSession>;
  reset(): void;
  close(): void;
}

export function attachMockRealtime(mock: MockUpstream): MockRealtime {
  const wss = new WebSocketServer({ noServer: true, autoPong: false, perMessageDeflate: false });
  const handshakes: RecordedHandshake[] = [];
  const sessions: MockRealtimeSession[] = [];
  const behaviours = new Map<string, HandshakeBehaviour>();
  let fallback: HandshakeBehaviour = { kind: 'accept' };
  let plan: ResponsePlan = { ...DEFAULT_PLAN };
  let seq = 0;
  const next = (prefix: string): string => `${prefix}_mock${++seq}`;

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const url = new URL(req.url ?? '/', 'http://mock-realtime.invalid');
    if (url.pathname !== '/v1/realtime') {
      socket.destroy();
      return;
    }
    const key = bearer(req.headers.authorization);
    const protocols = (req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter((p) => p !== '');
    const behaviour = key === null ? { kind: 'invalid-key' as const } : (behaviours.get(key) ?? fallback);
    handshakes.push({
      key,
      query: url.searchParams,
      headers: req.headers,
      protocols,
      behaviour: behaviour.kind,
    });
    switch (behaviour.kind) {
      case 'accept':
        wss.handleUpgrade(req, socket, head, (ws) => {
          const beta =
            /realtime=v1/.test(String(req.headers['openai-beta'] ?? '')) ||
            protocols.includes('openai-beta.realtime-v1');
          sessions.push(
            startSession(ws, key, beta, url.searchParams.get('model') ?? 'gpt-realtime', () => plan, next),
          );
        });
        return;
      case 'invalid-key':
        return answer(
          socket,
          401,
          oaiError(
            `Incorrect API key provided: ${maskKeyLikeOpenAI(key ?? '')}.`,
            'invalid_request_error',
            'invalid_api_key',
          ),
        );
      case 'rate-limited':
        return answer(socket, 429, oaiError('Rate limit reached.', 'requests', 'rate_limit_exceeded'), {
          'retry-after': String(behaviour.retryAfterSec ?? 1),
        });
      case 'error500':
        return answer(socket, 500, oaiError('The server had an error.', 'server_error', null));
      case 'status':
        return answer(socket, behaviour.status, behaviour.body);
      case 'drop':
        socket.destroy();
        return;
    }
  };
  mock.server.on('upgrade', onUpgrade);

  return {
    handshakes,
    sessions,
    setKey: (key, b) => void behaviours.set(key, b),
    setDefault: (b) => {
      fallback = b;
    },
    plan: (p) => {
      plan = { ...plan, ...p };
    },
    session: (n) => waitFor(() => sessions[n - 1]),
    reset: () => {
      for (const s of sessions) s.terminate();
      handshakes.length = 0;
      sessions.length = 0;
      behaviours.clear();
      fallback = { kind: 'accept' };
      plan = { ...DEFAULT_PLAN };
    },
    close: () => {
      mock.server.off('upgrade', onUpgrade);
      for (const s of sessions) s.terminate();
      wss.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// One accepted session
// ---------------------------------------------------------------------------------------------------

interface Held {
  id: string;
  sent: number;
}

function startSession(
  socket: WebSocket,
  key: string | null,
  beta: boolean,
  model: string,
  plan: () => ResponsePlan,
  next: (prefix: string) => string,
): MockRealtimeSession {
  const received: Json[] = [];
  const held: Held[] = [];
  let session: Json = beta
    ? {
        id: next('sess'),
        object: 'realtime.session',
        model,
        modalities: ['text', 'audio'],
        instructions: 'You are a helpful assistant.',
        input_audio_format: 'pcm16',
        output_audio_format: 'pcm16',
        input_audio_transcription: null,
        turn_detection: { type: 'server_vad' },
        tools: [],
        max_response_output_tokens: 'inf',
      }
    : {
        type: 'realtime',
        object: 'realtime.session',
        id: next('sess'),
        model,
        output_modalities: ['audio'],
        instructions: 'You are a helpful assistant.',
        audio: {
          input: {
            format: { type: 'audio/pcm', rate: 24000 },
            transcription: null,
            turn_detection: { type: 'server_vad' },
          },
          output: { format: { type: 'audio/pcm', rate: 24000 }, voice: 'alloy' },
        },
        tools: [],
        max_output_tokens: 'inf',
      };
  const name = (ga: string, old: string): string => (beta ? old : ga);
  const send = (event: Json): void => {
    if (socket.readyState === WebSocket.OPEN)
      socket.send(JSON.stringify({ event_id: next('event'), ...event }));
  };
  const done = (id: string, status: 'completed' | 'cancelled', usage: Json): void =>
    send({
      type: 'response.done',
      response: { object: 'realtime.response', id, status, output: [], conversation_id: 'conv_mock', usage },
    });

  const respond = (): void => {
    const p = plan();
    const id = next('resp');
    const itemId = next('item');
    send({
      type: 'response.created',
      response: {
        object: 'realtime.response',
        id,
        status: 'in_progress',
        output: [],
        conversation_id: 'conv_mock',
        usage: null,
      },
    });
    for (const piece of p.deltas) {
      const where = { response_id: id, item_id: itemId, output_index: 0, content_index: 0 };
      if (p.modality === 'audio') {
        send({
          type: name('response.output_audio.delta', 'response.audio.delta'),
          ...where,
          delta: Buffer.alloc(p.audioBytes, 7).toString('base64'),
        });
        send({
          type: name('response.output_audio_transcript.delta', 'response.audio_transcript.delta'),
          ...where,
          delta: piece,
        });
      } else {
        send({ type: name('response.output_text.delta', 'response.text.delta'), ...where, delta: piece });
      }
    }
    if (p.hold) held.push({ id, sent: p.deltas.length });
    else done(id, 'completed', p.usage);
  };

  const transcriptionOn = (): boolean => {
    const t = beta
      ? session['input_audio_transcription']
      : record(record(session['audio'])?.['input'])?.['transcription'];
    return isJson(t) && typeof t['model'] === 'string';
  };

  socket.on('message', (data: RawData, isBinary: boolean) => {
    if (isBinary) return;
    let event: Json;
    try {
      event = JSON.parse(String(data)) as Json;
    } catch {
      return send({
        type: 'error',
        error: {
          type: 'invalid_request_error',
          code: 'invalid_json',
          message: 'Bad JSON',
          param: null,
          event_id: null,
        },
      });
    }
    received.push(event);
    const clientEventId = typeof event['event_id'] === 'string' ? event['event_id'] : null;
    switch (event['type']) {
      case 'session.update':
        session = merge(session, record(event['session']) ?? {});
        return send({ type: 'session.updated', session });
      case 'conversation.item.create':
        return send({
          type: name('conversation.item.added', 'conversation.item.created'),
          item: { id: next('item'), ...record(event['item']) },
        });
      case 'input_audio_buffer.commit': {
        const itemId = next('item');
        send({ type: 'input_audio_buffer.committed', item_id: itemId });
        if (transcriptionOn()) {
          send({
            type: 'conversation.item.input_audio_transcription.completed',
            item_id: itemId,
            content_index: 0,
            transcript: 'hello there',
            usage: plan().transcriptionUsage,
          });
        }
        if (plan().autoRespond) respond();
        return;
      }
      case 'response.create':
        if (plan().rejectCreate) {
          return send({
            type: 'error',
            error: {
              type: 'invalid_request_error',
              code: 'conversation_already_has_active_response',
              message: 'Conversation already has an active response.',
              param: null,
              event_id: clientEventId,
            },
          });
        }
        return respond();
      case 'response.cancel': {
        if (!plan().answerCancel) return;
        const wanted = typeof event['response_id'] === 'string' ? event['response_id'] : undefined;
        const i = wanted === undefined ? held.length - 1 : held.findIndex((h) => h.id === wanted);
        const h = i < 0 ? undefined : held.splice(i, 1)[0];
        if (h === undefined) {
          return send({
            type: 'error',
            error: {
              type: 'invalid_request_error',
              code: 'response_cancel_not_active',
              message: 'No active response.',
              param: null,
              event_id: clientEventId,
            },
          });
        }
        return done(h.id, 'cancelled', plan().cancelledUsage);
      }
      default:
        return;
    }
  });

  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  socket.on('error', () => undefined);
  const s: MockRealtimeSession = {
    socket,
    key,
    beta,
    received,
    pings: 0,
    answerPings: true,
    closed,
    send,
    finish: () => {
      for (const h of held.splice(0)) done(h.id, 'completed', plan().usage);
    },
    close: (code, reason = '') => socket.close(code, reason),
    terminate: () => socket.terminate(),
    flood: (count, bytes) => {
      const type = name('response.output_audio.delta', 'response.audio.delta');
      const delta = 'A'.repeat(bytes);
      // Numbered, so the receiver can check the order.
      for (let i = 0; i < count; i++)
        socket.send(JSON.stringify({ type, response_id: 'resp_flood', seq: i, delta }));
    },
  };
  socket.on('ping', (data: Buffer) => {
    s.pings++;
    if (s.answerPings) socket.pong(data);
  });
  send({ type: 'session.created', session });
  return s;
}

// ---------------------------------------------------------------------------------------------------
// Helpers of the mock
// ---------------------------------------------------------------------------------------------------

function bearer(header: string | undefined): string | null {
  if (header === undefined) return null;
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  return m?.[1] ?? null;
}

function oaiError(message: string, type: string, code: string | null): Json {
  return { error: { message, type, param: null, code } };
}

function answer(socket: Duplex, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = Buffer.from(JSON.stringify(body));
  let head = `HTTP/1.1 ${status} Mock\r\ncontent-type: application/json\r\ncontent-length: ${payload.length}\r\nconnection: close\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  socket.end(Buffer.concat([Buffer.from(`${head}\r\n`), payload]));
}

function isJson(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function record(v: unknown): Json | undefined {
  return isJson(v) ? v : undefined;
}

/** Objects merge key by key; anything else replaces. */
function merge(base: Json, patch: Json): Json {
  const out: Json = { ...base };
  for (const [k, v] of Object.entries(patch)) {
    const b = out[k];
    out[k] = isJson(b) && isJson(v) ? merge(b, v) : v;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Client side: what the tests use to talk to the gateway
// ---------------------------------------------------------------------------------------------------

/**
 * The official SDK always dials `wss:` (it rewrites the base URL's scheme); the test gateway speaks
 * plain HTTP, so the SDK's `ws` is handed a plain TCP socket to the same host and port.
 */
export const plainSocket = ((opts: { host?: string; port?: number | string }): Socket =>
  connect({ host: opts.host ?? '127.0.0.1', port: Number(opts.port) })) as unknown as typeof createConnection;

export interface RealtimeClient {
  readonly socket: WebSocket;
  /** Every event received, parsed. */
  readonly events: Json[];
  pings: number;
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Headers of the gateway's 101 answer. */
  readonly upgradeHeaders: IncomingHttpHeaders;
  send(event: Json): void;
  /** The first event of `type` (from the `after`-th on), waiting for it. */
  next(type: string, after?: number): Promise<Json>;
  count(type: string): number;
}

/** A raw `ws` client of the gateway's `/v1/realtime`, open (rejects when the upgrade is refused). */
export async function openRealtime(
  baseUrl: string,
  opts: {
    model?: string;
    key?: string;
    protocols?: string[];
    headers?: Record<string, string>;
    query?: string;
    /** Options of the `ws` client (e.g. `autoPong: false` for a client that stops answering pings). */
    options?: ClientOptions;
  } = {},
): Promise<RealtimeClient> {
  const model = opts.model ?? 'gpt-realtime';
  const url = `${baseUrl.replace(/^http/, 'ws')}/v1/realtime?${opts.query ?? `model=${encodeURIComponent(model)}`}`;
  const headers = { ...opts.headers, ...(opts.key !== undefined && { authorization: `Bearer ${opts.key}` }) };
  const socket = new WebSocket(url, opts.protocols ?? [], { ...opts.options, headers });
  const events: Json[] = [];
  let upgradeHeaders: IncomingHttpHeaders = {};
  socket.once('upgrade', (res) => (upgradeHeaders = res.headers));
  socket.on('message', (data) => events.push(JSON.parse(String(data)) as Json));
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  socket.on('error', () => undefined);
  const client: RealtimeClient = {
    socket,
    events,
    pings: 0,
    closed,
    upgradeHeaders,
    send: (event) => socket.send(JSON.stringify(event)),
    next: (type, after = 0) => waitFor(() => events.slice(after).find((e) => e['type'] === type)),
    count: (type) => events.filter((e) => e['type'] === type).length,
  };
  socket.on('ping', () => client.pings++);
  return client;
}

/** An upgrade the gateway refuses: its HTTP status, headers and parsed body. */
export function refusedUpgrade(
  baseUrl: string,
  opts: { path?: string; key?: string; protocols?: string[]; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: IncomingHttpHeaders; body: Json }> {
  const url = `${baseUrl.replace(/^http/, 'ws')}${opts.path ?? '/v1/realtime?model=gpt-realtime'}`;
  const headers = { ...opts.headers, ...(opts.key !== undefined && { authorization: `Bearer ${opts.key}` }) };
  const socket = new WebSocket(url, opts.protocols ?? [], { headers });
  socket.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    socket.once('open', () => {
      socket.terminate();
      reject(new Error('the upgrade was accepted'));
    });
    socket.once('error', reject);
    socket.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        socket.terminate();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) as Json });
      });
    });
  });
}
