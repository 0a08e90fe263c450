/**
 * The `ws` package, loaded with the first realtime session rather than at start: a gateway that
 * never serves Realtime does not carry it (≈ 3 MB of resident memory). Its ready-state constants
 * are fixed by the WebSocket standard, so the relay can compare states without loading it.
 */
import { createRequire } from 'node:module';

type WsModule = typeof import('ws');

let loaded: WsModule | undefined;

export function ws(): WsModule {
  loaded ??= createRequire(import.meta.url)('ws') as WsModule;
  return loaded;
}

/** `WebSocket.OPEN` and `WebSocket.CLOSED` (RFC 6455 / WHATWG ready states). */
export const OPEN = 1;
export const CLOSED = 3;
