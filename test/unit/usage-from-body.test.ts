import { describe, expect, it } from 'vitest';
import { usageFromBody } from '../../src/proxy/relay-response.js';

const b = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('usageFromBody', () => {
  it('reads the usage object of a JSON answer', () => {
    const body = b(
      JSON.stringify({
        id: 'x',
        choices: [{ message: { content: 'hello "usage": {"prompt_tokens": 999}' } }],
        usage: { prompt_tokens: 12, completion_tokens: 7, prompt_tokens_details: { cached_tokens: 4 } },
        system_fingerprint: 'fp',
      }),
    );
    expect(usageFromBody(body)).toMatchObject({ promptTokens: 12, completionTokens: 7, cachedTokens: 4 });
  });

  it('accepts JSON whitespace around the colon', () => {
    expect(usageFromBody(b('{"usage" \n:\t {"prompt_tokens": 3, "completion_tokens": 2}}'))).toMatchObject({
      promptTokens: 3,
      completionTokens: 2,
    });
  });

  it('does not take a later object for a null usage', () => {
    expect(usageFromBody(b('{"usage": null, "other": {"prompt_tokens": 5}}'))).toBeUndefined();
    expect(usageFromBody(b('{"usage"::{"prompt_tokens": 5}}'))).toBeUndefined();
    expect(usageFromBody(b('{"usage" {"prompt_tokens": 5}}'))).toBeUndefined();
  });

  it('gives up on missing or truncated usage', () => {
    expect(usageFromBody(b('{"id": "x"}'))).toBeUndefined();
    expect(usageFromBody(b('{"usage": {"prompt_tokens": 5, "completion'))).toBeUndefined();
    expect(usageFromBody(b('{"usage":'))).toBeUndefined();
  });
});
