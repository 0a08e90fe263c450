// What the gateway reads from a realtime upgrade request, and the subprotocol it answers.
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  clientProtocol,
  isWebSocketHandshake,
  readUpgradeRequest,
} from '../../src/realtime/upgrade-request.js';

function request(url: string, headers: Record<string, string>, method = 'GET'): IncomingMessage {
  const req = new IncomingMessage(new Socket());
  req.url = url;
  req.method = method;
  req.headers = headers;
  return req;
}

const handshake = {
  upgrade: 'websocket',
  'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
  'sec-websocket-version': '13',
};

describe('readUpgradeRequest', () => {
  it('takes the key from the Authorization header first, else from the key subprotocol', () => {
    const both = readUpgradeRequest(
      request('/v1/realtime?model=m', {
        authorization: 'Bearer sk-header',
        'sec-websocket-protocol': 'realtime, openai-insecure-api-key.sk-proto',
      }),
    );
    expect(both.key).toBe('sk-header');
    const proto = readUpgradeRequest(
      request('/v1/realtime?model=m', {
        'sec-websocket-protocol': 'realtime, openai-insecure-api-key.sk-proto',
      }),
    );
    expect(proto.key).toBe('sk-proto');
    expect(readUpgradeRequest(request('/v1/realtime', {})).key).toBeUndefined();
  });

  it('offers upstream only realtime and openai-beta.* subprotocols, and passes OpenAI-Beta', () => {
    const r = readUpgradeRequest(
      request('/v1/realtime?model=m', {
        'sec-websocket-protocol':
          'realtime,openai-insecure-api-key.sk-x, openai-beta.realtime-v1 ,openai-organization.org',
        'openai-beta': 'realtime=v1',
      }),
    );
    expect(r.upstreamProtocols).toEqual(['realtime', 'openai-beta.realtime-v1']);
    expect(r.upstreamHeaders).toEqual({ 'OpenAI-Beta': 'realtime=v1' });
  });

  it('sends upstream exactly the model that was admitted', () => {
    const r = readUpgradeRequest(
      request('/v1/realtime?model=gpt-realtime&model=gpt-4o-realtime-preview&x=1', {}),
    );
    expect(r.model).toBe('gpt-realtime');
    expect(new URLSearchParams(r.upstreamQuery).getAll('model')).toEqual(['gpt-realtime']);
    expect(new URLSearchParams(r.upstreamQuery).get('x')).toBe('1');
    expect(readUpgradeRequest(request('/v1/realtime?model=', {})).model).toBeUndefined();
    expect(readUpgradeRequest(request('/v1/realtime?call_id=c1', {})).callId).toBe(true);
  });

  it('recognises a WebSocket handshake', () => {
    expect(isWebSocketHandshake(request('/v1/realtime', handshake))).toBe(true);
    expect(isWebSocketHandshake(request('/v1/realtime', handshake, 'POST'))).toBe(false);
    expect(
      isWebSocketHandshake(request('/v1/realtime', { ...handshake, 'sec-websocket-key': 'short' })),
    ).toBe(false);
    expect(
      isWebSocketHandshake(request('/v1/realtime', { ...handshake, 'sec-websocket-version': '12' })),
    ).toBe(false);
  });
});

describe('clientProtocol', () => {
  it("echoes realtime when offered, else upstream's choice when offered, never the key", () => {
    expect(clientProtocol(new Set(['openai-insecure-api-key.sk', 'realtime']), 'realtime')).toBe('realtime');
    expect(clientProtocol(new Set(['openai-beta.realtime-v1']), 'openai-beta.realtime-v1')).toBe(
      'openai-beta.realtime-v1',
    );
    expect(clientProtocol(new Set(['openai-insecure-api-key.sk']), '')).toBe(false);
    expect(clientProtocol(new Set(), 'realtime')).toBe(false);
  });
});
