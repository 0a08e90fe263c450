// Which close codes may be sent, and how a peer's close is relayed to the other peer.
import { describe, expect, it } from 'vitest';
import { clipReason, isSendableCode, relayedClose } from '../../src/realtime/close-codes.js';

describe('close codes', () => {
  it('allows the protocol codes that may be on the wire, and application codes', () => {
    for (const code of [1000, 1001, 1008, 1011, 1012, 1014, 3000, 4001, 4999])
      expect(isSendableCode(code)).toBe(true);
    for (const code of [999, 1004, 1005, 1006, 1015, 2000, 5000]) expect(isSendableCode(code)).toBe(false);
  });

  it('relays a sendable code as it is, no code as 1000, a lost connection as 1011', () => {
    expect(relayedClose(4001, 'bye')).toEqual({ code: 4001, reason: 'bye' });
    expect(relayedClose(1005, '')).toEqual({ code: 1000, reason: '' });
    expect(relayedClose(1006, '')).toEqual({ code: 1011, reason: 'connection lost' });
    expect(relayedClose(1015, 'tls')).toEqual({ code: 1011, reason: 'tls' });
  });

  it('clips a reason to 123 bytes without splitting a character', () => {
    const reason = 'é'.repeat(100);
    const clipped = clipReason(reason);
    expect(Buffer.byteLength(clipped)).toBeLessThanOrEqual(123);
    expect(clipped).toBe('é'.repeat(61));
    expect(clipReason('short')).toBe('short');
  });
});
