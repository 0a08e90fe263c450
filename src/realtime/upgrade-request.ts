/**
 * What a realtime upgrade request asks for: the key (Authorization header, or the subprotocol
 * `openai-insecure-api-key.<key>` that browsers use because they cannot set headers), the model,
 * and the subprotocols and headers that may travel upstream. Pure functions of the request, so
 * the gateway's refusals are decided before anything is sent anywhere.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { bearerKey } from '../accounts/authenticate.js';

const KEY_PROTOCOL_PREFIX = 'openai-insecure-api-key.';
const BETA_PROTOCOL_PREFIX = 'openai-beta.';
/** The subprotocol OpenAI answers to browsers; echoed to a client that offers it. */
export const REALTIME_PROTOCOL = 'realtime';

export interface UpgradeRequest {
  readonly pathname: string;
  /** The account key, from the Authorization header or else the key subprotocol. */
  readonly key: string | undefined;
  /** The `model` query parameter (the first one, when repeated). */
  readonly model: string | undefined;
  /** A sideband connection to a WebRTC call (`call_id`) rather than a new session. */
  readonly callId: boolean;
  /** Subprotocols the client offered, in its order. */
  readonly offered: readonly string[];
  /** Query string for upstream: the client's, with exactly one `model` (the one admitted). */
  readonly upstreamQuery: string;
  /** Subprotocols to offer upstream: `realtime` and `openai-beta.*`, never the key one. */
  readonly upstreamProtocols: readonly string[];
  /** Headers for upstream besides the pool key: `OpenAI-Beta` when the client sent it. */
  readonly upstreamHeaders: Readonly<Record<string, string>>;
}

export function readUpgradeRequest(req: IncomingMessage): UpgradeRequest {
  const url = new URL(req.url ?? '/', 'http://gateway.invalid');
  const query = url.searchParams;
  const model = query.get('model') ?? undefined;
  if (model !== undefined) query.set('model', model);
  const offered = offeredProtocols(req.headers);
  const keyProtocol = offered.find((p) => p.startsWith(KEY_PROTOCOL_PREFIX));
  const fromProtocol = keyProtocol?.slice(KEY_PROTOCOL_PREFIX.length);
  const beta = req.headers['openai-beta'];
  return {
    pathname: url.pathname,
    key: bearerKey(req.headers) ?? (fromProtocol === '' ? undefined : fromProtocol),
    model: model === '' ? undefined : model,
    callId: query.has('call_id'),
    offered,
    upstreamQuery: query.toString(),
    upstreamProtocols: offered.filter((p) => p === REALTIME_PROTOCOL || p.startsWith(BETA_PROTOCOL_PREFIX)),
    upstreamHeaders: typeof beta === 'string' ? { 'OpenAI-Beta': beta } : {},
  };
}

/** Whether the request is a WebSocket handshake `ws` will accept (checked before any work). */
export function isWebSocketHandshake(req: IncomingMessage): boolean {
  const key = req.headers['sec-websocket-key'];
  const version = req.headers['sec-websocket-version'];
  return (
    req.method === 'GET' &&
    (req.headers.upgrade ?? '').toLowerCase() === 'websocket' &&
    typeof key === 'string' &&
    /^[+/0-9A-Za-z]{22}==$/.test(key) &&
    (version === '13' || version === '8')
  );
}

/**
 * The subprotocol answered to the client, like OpenAI: `realtime` when offered; otherwise the one
 * upstream chose if the client offered it; otherwise none. The key subprotocol is never echoed.
 */
export function clientProtocol(offered: ReadonlySet<string>, upstreamChosen: string): string | false {
  if (offered.has(REALTIME_PROTOCOL)) return REALTIME_PROTOCOL;
  if (upstreamChosen !== '' && offered.has(upstreamChosen) && !upstreamChosen.startsWith(KEY_PROTOCOL_PREFIX))
    return upstreamChosen;
  return false;
}

function offeredProtocols(headers: IncomingHttpHeaders): string[] {
  const raw = headers['sec-websocket-protocol'];
  if (typeof raw !== 'string') return [];
  return raw
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
}
