/**
 * Keeps both peers of a realtime session honest: each one is pinged on one shared timer, and a
 * peer that neither answered the previous ping nor sent anything since is reported dead (the
 * session then terminates it). Pings of the peers are answered by `ws` itself.
 *
 * A peer whose socket the session holds paused for back-pressure is skipped: its pong could not be
 * read while the socket is not read, and a slow consumer on the other side is no reason to drop it.
 */
import type { WebSocket } from 'ws';
import { OPEN } from './ws-lib.js';

export type Side = 'client' | 'upstream';

export interface Peer {
  readonly side: Side;
  readonly socket: WebSocket;
  /** True while the session does not read this peer's socket. */
  readonly paused: () => boolean;
}

export class KeepAlive {
  private readonly waiting = new Map<Side, boolean>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly peers: readonly Peer[],
    private readonly intervalMs: number,
    private readonly onDead: (side: Side) => void,
  ) {
    for (const p of peers) p.socket.on('pong', () => this.heard(p.side));
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Anything received from a peer proves it alive. */
  heard(side: Side): void {
    this.waiting.set(side, false);
  }

  private tick(): void {
    for (const p of this.peers) {
      if (p.socket.readyState !== OPEN) continue;
      if (p.paused()) {
        this.waiting.set(p.side, false);
        continue;
      }
      if (this.waiting.get(p.side) === true) {
        this.stop();
        this.onDead(p.side);
        return;
      }
      this.waiting.set(p.side, true);
      p.socket.ping();
    }
  }
}
