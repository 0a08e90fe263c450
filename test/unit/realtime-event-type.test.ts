// The cheap type scan of realtime frames agrees with JSON.parse, whatever comes before `type`.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { eventType, frameBuffer } from '../../src/realtime/event-type.js';

const type = (s: string): string | undefined => eventType(Buffer.from(s));

describe('eventType', () => {
  it('reads the type when it comes first, as OpenAI and the SDKs write it', () => {
    expect(type('{"type":"response.done","event_id":"e1"}')).toBe('response.done');
    expect(type(' {\n  "type" : "session.update" }')).toBe('session.update');
  });

  it('skips earlier keys whose values hold a nested "type"', () => {
    const frame = JSON.stringify({
      event_id: 'x"y\\',
      item: { type: 'message', content: [{ type: 'input_text', text: '"type":"response.create"' }] },
      n: -1.5e3,
      ok: true,
      none: null,
      type: 'conversation.item.create',
    });
    expect(type(frame)).toBe('conversation.item.create');
  });

  it('decodes an escaped spelling of the key and of the value, as JSON.parse does', () => {
    expect(type('{"\\u0074ype":"\\u0072esponse.create"}')).toBe('response.create');
  });

  it('answers undefined for anything that is not an object with a string type', () => {
    for (const s of [
      '',
      '[]',
      '"type"',
      '{"type":1}',
      '{"event_id":"a"}',
      '{"type":"cut',
      '{"a":{"b":',
      'garbage',
    ]) {
      expect(type(s)).toBeUndefined();
    }
  });

  it('agrees with JSON.parse wherever the type key sits (property)', () => {
    const key = fc.string({ maxLength: 8 }).filter((k) => k !== 'type');
    fc.assert(
      fc.property(
        fc.array(fc.tuple(key, fc.jsonValue({ maxDepth: 3 })), { maxLength: 6 }),
        fc.nat(),
        fc.string({ maxLength: 30 }),
        fc.boolean(),
        (entries, at, value, pretty) => {
          const list: Array<[string, unknown]> = [...entries];
          list.splice(at % (list.length + 1), 0, ['type', value]);
          const obj = Object.fromEntries(list);
          const text = pretty ? JSON.stringify(obj, null, 2) : JSON.stringify(obj);
          expect(type(text)).toBe((JSON.parse(text) as { type: string }).type);
        },
      ),
    );
  });
});

describe('frameBuffer', () => {
  it('joins fragments and wraps array buffers', () => {
    expect(frameBuffer([Buffer.from('ab'), Buffer.from('c')]).toString()).toBe('abc');
    expect(frameBuffer(new Uint8Array([104, 105]).buffer).toString()).toBe('hi');
  });
});
