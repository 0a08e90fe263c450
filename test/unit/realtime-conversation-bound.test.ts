// The input bound of realtime responses: text by bytes, audio by duration, images by a fixed bound,
// growing with every response and never shrinking, capped at the largest context window.
import { describe, expect, it } from 'vitest';
import {
  CONTEXT_TOKENS_CAP,
  ConversationBound,
  IMAGE_TOKENS_BOUND,
  audioTokens,
  eventTokens,
} from '../../src/realtime/conversation-bound.js';

describe('audioTokens', () => {
  it('counts 20 tokens per second of audio in the given format', () => {
    // One second of 24 kHz pcm16 is 48,000 bytes, 64,000 base64 characters.
    expect(audioTokens(64_000, 48_000)).toBe(20);
    // The same characters in 8 kHz G.711 are six seconds.
    expect(audioTokens(64_000, 8_000)).toBe(120);
    expect(audioTokens(1, 48_000)).toBe(1);
    expect(audioTokens(0, 48_000)).toBe(0);
  });
});

describe('eventTokens', () => {
  it('counts text by bytes, audio by duration and each image by a fixed bound', () => {
    const audio = 'A'.repeat(64_000);
    const image = `data:image/png;base64,${'B'.repeat(10_000)}`;
    const event = {
      type: 'conversation.item.create',
      item: {
        type: 'message',
        role: 'user',
        content: [
          { type: 'input_text', text: 'hello' },
          { type: 'input_audio', audio },
          { type: 'input_image', image_url: image },
        ],
      },
    };
    const bytes = Buffer.byteLength(JSON.stringify(event));
    expect(eventTokens(event, bytes, 48_000)).toBe(
      bytes - audio.length - image.length + 20 + IMAGE_TOKENS_BOUND,
    );
  });
});

describe('ConversationBound', () => {
  it('starts at the session description and grows with what is added', () => {
    const b = new ConversationBound();
    b.sessionDescribed(800);
    b.add(100);
    expect(b.inputBound(0)).toBe(900);
    expect(b.inputBound(50)).toBe(950);
  });

  it('adds each response output, and takes upstream count when it is higher', () => {
    const b = new ConversationBound();
    b.add(100);
    b.responseStarted('r1');
    b.add(10);
    // Upstream counted 5,000 input tokens (default instructions, say): 5,000 + 40 out + 10 added since.
    b.responseEnded('r1', 5_000, 40);
    expect(b.inputBound(0)).toBe(5_050);
    // A small out-of-band response never lowers the bound.
    b.responseStarted('r2');
    b.responseEnded('r2', 3, 2);
    expect(b.inputBound(0)).toBe(5_052);
  });

  it('never exceeds the largest context window', () => {
    const b = new ConversationBound();
    b.add(10_000_000);
    expect(b.inputBound(1_000)).toBe(CONTEXT_TOKENS_CAP);
  });
});
