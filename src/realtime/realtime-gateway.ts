/**
 * The realtime front door: `GET /v1/realtime?model=…` WebSocket upgrades, top to bottom.
 *
 *   path and handshake → draining? → authenticate (header, or the browsers' key subprotocol)
 *   → admit (status, IP, model ACL, balance, HardLimit, price, RPM; nothing reserved yet)
 *   → connect upstream with a pool key, another one after a failed handshake (connect-upstream.ts)
 *   → only then complete the client's upgrade → run the session (realtime-session.ts)
 *
 * Every refusal before the upgrade is a plain HTTP answer with OpenAI's error body: a refused
 * session never gets a 101. `closeAll` ends every session (1001) and settles it, for shutdown.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket, WebSocketServer } from 'ws';
import { ws } from './ws-lib.js';
import type { Account } from '../accounts/account.js';
import type { Authenticator } from '../accounts/authenticate.js';
import type { Ticket } from '../billing/meter.js';
import type { ModelPrice } from '../billing/price-table.js';
import { GatewayError } from '../errors/catalogue.js';
import type { ClientAddress } from '../http/client-address.js';
import { nextRequestId } from '../http/server.js';
import type { ParsedRequest } from '../proxy/parse-request.js';
import { Cancel } from '../upstream/cancel.js';
import type { RetryPolicy } from '../upstream/send-with-retry.js';
import type { RealtimeServices } from './create-realtime-gateway.js';
import { connectUpstream, type ConnectResult, type UpstreamTarget } from './connect-upstream.js';
import { RealtimeSession, type SessionTiming } from './realtime-session.js';
import { refuseUpgrade, writeHttpAnswer } from './refuse-upgrade.js';
import { REALTIME_PATH } from './ticket-desk.js';
import { clientProtocol, isWebSocketHandshake, readUpgradeRequest } from './upgrade-request.js';

/** Largest frame accepted from either side (OpenAI caps an audio append at 15 MiB). */
export const MAX_FRAME_BYTES = 32 * 1024 * 1024;

export interface RealtimeDeps extends RealtimeServices {
  readonly auth: Authenticator;
  readonly clientAddress: ClientAddress;
  readonly target: UpstreamTarget;
  readonly retry: RetryPolicy;
  readonly timing: SessionTiming;
  readonly maxOutputTokensCap: number;
}

export interface RealtimeStats {
  readonly sessions: number;
  /** Bytes queued toward peers now, over all sessions, and the most one session ever queued. */
  readonly queued: number;
  readonly maxQueued: number;
  readonly upstreamPauses: number;
  readonly clientPauses: number;
}

export class RealtimeGateway {
  /** Made with the first session (see ws-lib.ts). */
  private wssMade: WebSocketServer | undefined;
  private readonly sessions = new Set<RealtimeSession>();
  /** Upstream handshakes running, aborted by `closeAll`. */
  private readonly connecting = new Set<Cancel>();
  /** What the 101 answer carries for a request: its subprotocol and request id. */
  private readonly answers = new WeakMap<IncomingMessage, { protocol: string | false; requestId: string }>();
  private closing = false;
  private ended = { maxQueued: 0, upstreamPauses: 0, clientPauses: 0 };

  constructor(private readonly deps: RealtimeDeps) {}

  private get wss(): WebSocketServer {
    if (this.wssMade !== undefined) return this.wssMade;
    const wss = new (ws().WebSocketServer)({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: MAX_FRAME_BYTES,
      handleProtocols: (_offered, req) => this.answers.get(req)?.protocol ?? false,
    });
    wss.on('headers', (lines: string[], req: IncomingMessage) => {
      const answer = this.answers.get(req);
      if (answer !== undefined) lines.push(`x-request-id: ${answer.requestId}`);
    });
    this.wssMade = wss;
    return wss;
  }

  /** The HTTP server's 'upgrade' listener. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    let upgraded = false;
    this.upgrade(req, socket, head, () => (upgraded = true)).catch((err: unknown) => {
      this.deps.log.error({ err }, 'realtime upgrade failed');
      if (upgraded) socket.destroy();
      else refuseUpgrade(socket, new GatewayError('internal'));
    });
  }

  /** Ends every session (close code 1001) and resolves once all are settled and closed. */
  async closeAll(): Promise<void> {
    this.closing = true;
    for (const c of this.connecting) c.abort();
    const sessions = [...this.sessions];
    await Promise.all(sessions.map((s) => s.shutdown()));
    await Promise.all(sessions.map((s) => s.closed));
  }

  stats(): RealtimeStats {
    let queued = 0;
    let { maxQueued, upstreamPauses, clientPauses } = this.ended;
    for (const s of this.sessions) {
      const st = s.stats();
      queued += st.queued;
      maxQueued = Math.max(maxQueued, st.maxQueued);
      upstreamPauses += st.upstreamPauses;
      clientPauses += st.clientPauses;
    }
    return { sessions: this.sessions.size, queued, maxQueued, upstreamPauses, clientPauses };
  }

  private async upgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    onUpgraded: () => void,
  ): Promise<void> {
    // Until ws owns the socket, a reset must not become an unhandled 'error'.
    const ignore = (): void => undefined;
    socket.on('error', ignore);
    const request = readUpgradeRequest(req);
    if (request.pathname !== REALTIME_PATH) {
      const path = request.pathname.slice(0, 200);
      return refuseUpgrade(socket, new GatewayError('not_found', `Unknown route: GET ${path}`));
    }
    if (!isWebSocketHandshake(req)) {
      const message = 'Invalid WebSocket handshake: this path takes GET with Upgrade: websocket.';
      return refuseUpgrade(socket, new GatewayError('invalid_value', message));
    }
    if (this.closing || this.deps.isDraining())
      return refuseUpgrade(socket, new GatewayError('shutting_down'));
    const requestId = nextRequestId();
    const idHeader = { 'x-request-id': requestId };
    const auth = await this.deps.auth.authenticate(
      request.key === undefined ? {} : { authorization: request.key },
    );
    if (!auth.ok) return refuseUpgrade(socket, auth.error, idHeader);
    if (request.callId) {
      const message =
        'Connecting to a call (call_id) is not supported by this gateway; open a session with model.';
      return refuseUpgrade(socket, new GatewayError('invalid_value', message, 'call_id'), idHeader);
    }
    if (request.model === undefined) {
      const message = "Missing required parameter: 'model' (e.g. /v1/realtime?model=gpt-realtime).";
      return refuseUpgrade(socket, new GatewayError('invalid_value', message, 'model'), idHeader);
    }
    const account = auth.account;
    const ip = this.deps.clientAddress.of(req);
    let admission = this.deps.meter.admit(
      account,
      REALTIME_PATH,
      sessionRequest(request.model),
      ip,
      requestId,
    );
    if (admission instanceof Promise) admission = await admission;
    if (!admission.ok) return refuseUpgrade(socket, admission.error, idHeader);
    const ticket = admission.ticket;
    const headers = { ...admission.headers, ...idHeader };
    try {
      if (ticket.price === undefined) throw new Error('admitted realtime model without a price');
      const connected = await this.connect(request, socket);
      if (connected.kind !== 'open') return this.refuseAfterConnect(socket, ticket, connected, headers);
      if (socket.destroyed || this.closing) {
        connected.socket.terminate();
        const gone: ConnectResult = this.closing
          ? { kind: 'error', error: new GatewayError('shutting_down'), attempts: connected.attempts }
          : { kind: 'aborted', attempts: connected.attempts };
        return this.refuseAfterConnect(socket, ticket, gone, headers);
      }
      const protocol = clientProtocol(new Set(request.offered), connected.socket.protocol);
      this.answers.set(req, { protocol, requestId });
      let client: WebSocket | undefined;
      // ws completes the upgrade synchronously (no verifyClient), or answers 400 itself.
      this.wss.handleUpgrade(req, socket, head, (c) => (client = c));
      socket.off('error', ignore);
      if (client === undefined) {
        connected.socket.terminate();
        this.deps.meter.settle(ticket, {
          kind: 'failed',
          status: 400,
          outcome: 'upstream-error',
          attempts: connected.attempts,
        });
        return;
      }
      onUpgraded();
      this.start(client, connected, account, ticket, ticket.price);
    } catch (err) {
      // Settling twice is a no-op, so this covers every path that threw before the session began.
      this.deps.meter.settle(ticket, { kind: 'failed', status: 500, outcome: 'upstream-error', attempts: 0 });
      throw err;
    }
  }

  private async connect(
    request: ReturnType<typeof readUpgradeRequest>,
    socket: Duplex,
  ): Promise<ConnectResult> {
    const cancel = new Cancel();
    const onGone = (): void => cancel.abort();
    socket.once('close', onGone);
    socket.once('end', onGone);
    this.connecting.add(cancel);
    try {
      return await connectUpstream(
        {
          pool: this.deps.pool,
          retry: this.deps.retry,
          target: this.deps.target,
          maxPayload: MAX_FRAME_BYTES,
          onAttempt: (outcome) => this.deps.metrics.countAttempt(outcome.kind),
        },
        {
          query: request.upstreamQuery,
          protocols: request.upstreamProtocols,
          headers: request.upstreamHeaders,
          cancel,
        },
      );
    } finally {
      this.connecting.delete(cancel);
      socket.off('close', onGone);
      socket.off('end', onGone);
    }
  }

  /** No session after all: settle the admission ticket and answer over HTTP. */
  private refuseAfterConnect(
    socket: Duplex,
    ticket: Ticket,
    result: Exclude<ConnectResult, { kind: 'open' }>,
    headers: Record<string, string>,
  ): void {
    const { meter } = this.deps;
    const attempts = result.attempts;
    switch (result.kind) {
      case 'aborted':
        if (this.closing) {
          meter.settle(ticket, { kind: 'failed', status: 503, outcome: 'upstream-error', attempts });
          return refuseUpgrade(socket, new GatewayError('shutting_down'), headers);
        }
        meter.settle(ticket, { kind: 'failed', status: 499, outcome: 'client-gone', attempts });
        socket.destroy();
        return;
      case 'error':
        meter.settle(ticket, {
          kind: 'failed',
          status: result.error.status,
          outcome: 'upstream-error',
          attempts,
        });
        return refuseUpgrade(socket, result.error, headers);
      case 'answer':
        meter.settle(ticket, { kind: 'failed', status: result.status, outcome: 'upstream-error', attempts });
        return writeHttpAnswer(socket, result.status, result.body, headers);
    }
  }

  private start(
    client: WebSocket,
    connected: Extract<ConnectResult, { kind: 'open' }>,
    account: Account,
    ticket: Ticket,
    price: ModelPrice,
  ): void {
    const { deps } = this;
    const log = deps.log.child({
      requestId: ticket.requestId,
      accountId: account.id,
      model: ticket.model,
      keyId: connected.key.id,
    });
    const session = new RealtimeSession({
      client,
      upstream: connected.socket,
      early: connected.early,
      timing: deps.timing,
      log,
      meter: {
        meter: deps.meter,
        prices: deps.prices,
        account,
        ticket,
        price,
        attempts: connected.attempts,
        maxOutputTokensCap: deps.maxOutputTokensCap,
        accountUsable: () => account.status && deps.registry.get(account.id) === account,
        log,
        onSettled: (cost, outcome) => {
          if (cost > 0) deps.metrics.countCharged(cost);
          deps.metrics.countRealtimeResponse(outcome);
        },
      },
    });
    this.sessions.add(session);
    deps.metrics.realtimeSessions.inc();
    void session.ended.then(() => {
      const st = session.stats();
      this.ended = {
        maxQueued: Math.max(this.ended.maxQueued, st.maxQueued),
        upstreamPauses: this.ended.upstreamPauses + st.upstreamPauses,
        clientPauses: this.ended.clientPauses + st.clientPauses,
      };
      this.sessions.delete(session);
      deps.metrics.realtimeSessions.dec();
    });
    log.info('realtime session started');
    session.start();
  }
}

/** What admission needs of a session: its model (nothing is reserved for the session itself). */
function sessionRequest(model: string): ParsedRequest {
  return { model, stream: false, json: undefined, body: undefined, stripUsageChunk: false, multipart: false };
}
