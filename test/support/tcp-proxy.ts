/**
 * A TCP relay between the gateways of a test and a server they depend on (PostgreSQL), so a test
 * can take the server "away" without touching the machine's real one: `cut()` drops every open
 * connection and refuses new ones (each is accepted and reset at once, as a server that went
 * down), `restore()` relays again.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  readonly port: number;
  /** The server is away: open connections are reset, new ones refused. */
  cut(): void;
  /** The server is back. */
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  let away = false;
  const open = new Set<Socket>();
  const server: Server = createServer((client) => {
    if (away) {
      client.resetAndDestroy();
      return;
    }
    const upstream = createConnection({ host: targetHost, port: targetPort });
    open.add(client);
    open.add(upstream);
    const end = (): void => {
      open.delete(client);
      open.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('tcp proxy: no port');
  return {
    port: address.port,
    cut() {
      away = true;
      for (const s of open) s.resetAndDestroy();
      open.clear();
    },
    restore() {
      away = false;
    },
    close() {
      away = true;
      for (const s of open) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
