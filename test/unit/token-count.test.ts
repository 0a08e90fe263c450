// Unit tests of token counting: encoding choice, exact counts of known strings, prompt estimates for
// every endpoint shape, the huge-input fallback and max output tokens.
import { describe, expect, it } from 'vitest';
import {
  MAX_TOKENIZE_CHARS,
  countTextTokens,
  encodingForModel,
  estimatePromptTokens,
  estimateTokensFromLength,
  maxOutputTokens,
  warmTokenizers,
} from '../../src/billing/token-count.js';

describe('encodingForModel', () => {
  it('uses o200k for the gpt-4o / 4.1 / 4.5 / 5 / o-series families', () => {
    for (const m of [
      'gpt-4o',
      'gpt-4o-mini-2024-07-18',
      'chatgpt-4o-latest',
      'gpt-4.1-nano',
      'gpt-4.5-preview',
      'gpt-5',
      'gpt-5.1-codex',
      'o1',
      'o3-mini',
      'o4-mini',
      'omni-moderation-latest',
      'ft:gpt-4o-mini-2024-07-18:acme::x',
      'something-new',
    ]) {
      expect(encodingForModel(m), m).toBe('o200k_base');
    }
  });

  it('uses cl100k for gpt-4 / gpt-3.5 / embeddings', () => {
    for (const m of [
      'gpt-4',
      'gpt-4-0613',
      'gpt-4-turbo',
      'gpt-4-32k',
      'gpt-3.5-turbo',
      'gpt-3.5-turbo-instruct',
      'text-embedding-3-small',
      'text-embedding-ada-002',
      'ft:gpt-3.5-turbo-0125:acme::x',
      'davinci-002',
    ]) {
      expect(encodingForModel(m), m).toBe('cl100k_base');
    }
  });
});

describe('countTextTokens', () => {
  it('counts with the real tokenizer', () => {
    warmTokenizers();
    expect(countTextTokens('gpt-4o', '')).toBe(0);
    expect(countTextTokens('gpt-4o', 'hello world')).toBe(2);
    expect(countTextTokens('gpt-4', 'hello world')).toBe(2);
    // "tiktoken is great!" is 6 tokens in cl100k (OpenAI cookbook example).
    expect(countTextTokens('gpt-3.5-turbo', 'tiktoken is great!')).toBe(6);
    // The encodings differ on non-English text.
    const text = 'Привет, как дела? これは日本語のテキストです。';
    expect(countTextTokens('gpt-4o', text)).not.toBe(countTextTokens('gpt-4', text));
  });

  it('treats special-token text as plain text instead of throwing', () => {
    expect(countTextTokens('gpt-4o', 'a <|endoftext|> b')).toBeGreaterThan(3);
    expect(countTextTokens('gpt-4', '<|im_start|>user')).toBeGreaterThan(1);
  });

  it('estimates huge texts from their UTF-8 length instead of tokenizing them', () => {
    const big = 'x'.repeat(MAX_TOKENIZE_CHARS + 4);
    expect(countTextTokens('gpt-4o', big)).toBe((MAX_TOKENIZE_CHARS + 4) / 4);
    const cjk = '日'.repeat(MAX_TOKENIZE_CHARS + 1);
    expect(countTextTokens('gpt-4o', cjk)).toBe(Math.ceil(((MAX_TOKENIZE_CHARS + 1) * 3) / 4));
    expect(estimateTokensFromLength('abcde')).toBe(2);
  });

  it('is fast on large, tokenizer-hostile input', () => {
    const big = Array.from({ length: 3_000_000 }, (_, i) => String.fromCharCode(33 + ((i * 7919) % 90))).join(
      '',
    );
    const t0 = performance.now();
    countTextTokens('gpt-4o', big);
    expect(performance.now() - t0).toBeLessThan(50);
  });
});

describe('estimatePromptTokens', () => {
  it('follows the cookbook for chat messages', () => {
    const messages = [
      { role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', content: 'Hello!', name: 'bob' },
    ];
    const text = countTextTokens('gpt-4o', 'You are a helpful assistant.\nHello!\nbob');
    // 3 per message + 1 for the name + 3 reply priming
    expect(estimatePromptTokens('/v1/chat/completions', { model: 'gpt-4o', messages })).toBe(
      text + 3 * 2 + 1 + 3,
    );
  });

  it('is close to the tokens OpenAI reports for a simple chat', () => {
    // OpenAI reports 13 prompt tokens for this request with gpt-4o-mini.
    const n = estimatePromptTokens('/v1/chat/completions', {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Say this is a test' }],
    });
    expect(n).toBeGreaterThanOrEqual(11);
    expect(n).toBeLessThanOrEqual(15);
  });

  it('counts content parts, tool calls, tools and images', () => {
    const body = {
      model: 'gpt-4o',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is in this image?' },
            {
              type: 'image_url',
              image_url: { url: 'data:image/png;base64,' + 'A'.repeat(100_000), detail: 'low' },
            },
          ],
        },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{"q":"cats"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: 'Cats are mammals.' },
      ],
      tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }],
    };
    const n = estimatePromptTokens('/v1/chat/completions', body);
    // The base64 image is not tokenized: 85 tokens for a low-detail image plus the small texts.
    expect(n).toBeGreaterThan(85 + 20);
    expect(n).toBeLessThan(85 + 100);
    const high = structuredClone(body);
    const part = high.messages[0]?.content;
    if (Array.isArray(part) && part[1])
      part[1] = { type: 'image_url', image_url: { url: 'https://x/y.png', detail: 'high' } };
    expect(estimatePromptTokens('/v1/chat/completions', high)).toBe(n - 85 + 765);
  });

  it('handles completions prompts: string, array, token arrays', () => {
    const one = countTextTokens('gpt-3.5-turbo-instruct', 'Say this is a test');
    expect(
      estimatePromptTokens('/v1/completions', {
        model: 'gpt-3.5-turbo-instruct',
        prompt: 'Say this is a test',
      }),
    ).toBe(one);
    expect(
      estimatePromptTokens('/v1/completions', {
        model: 'gpt-3.5-turbo-instruct',
        prompt: ['Say this is a test', 'x'],
      }),
    ).toBeGreaterThan(one);
    expect(estimatePromptTokens('/v1/completions', { model: 'davinci-002', prompt: [1, 2, 3, 4] })).toBe(4);
    expect(estimatePromptTokens('/v1/completions', { model: 'davinci-002', prompt: [[1, 2], [3]] })).toBe(3);
  });

  it('handles embeddings input: string, strings, tokens', () => {
    expect(
      estimatePromptTokens('/v1/embeddings', { model: 'text-embedding-3-small', input: 'hello world' }),
    ).toBe(2);
    expect(
      estimatePromptTokens('/v1/embeddings', {
        model: 'text-embedding-3-small',
        input: ['hello world', 'hi'],
      }),
    ).toBe(countTextTokens('text-embedding-3-small', 'hello world\nhi'));
    expect(
      estimatePromptTokens('/v1/embeddings', { model: 'text-embedding-3-small', input: [5, 6, 7] }),
    ).toBe(3);
  });

  it('handles the responses API: instructions + string or item input', () => {
    const s = estimatePromptTokens('/v1/responses', {
      model: 'gpt-5',
      instructions: 'Be brief.',
      input: 'hello world',
    });
    expect(s).toBe(countTextTokens('gpt-5', 'Be brief.\nhello world'));
    const items = estimatePromptTokens('/v1/responses', {
      model: 'gpt-5',
      input: [
        { role: 'user', content: [{ type: 'input_text', text: 'hello world' }] },
        { type: 'function_call_output', call_id: 'c1', output: 'sunny' },
        { type: 'reasoning', encrypted_content: 'Z'.repeat(50_000), summary: [] },
      ],
    });
    expect(items).toBeGreaterThan(5);
    expect(items).toBeLessThan(20);
  });

  it('ignores query strings and returns 0 for garbage bodies', () => {
    expect(
      estimatePromptTokens('/v1/embeddings?x=1', { model: 'text-embedding-3-small', input: 'hello world' }),
    ).toBe(2);
    expect(estimatePromptTokens('/v1/chat/completions', null)).toBe(0);
    expect(estimatePromptTokens('/v1/chat/completions', 'text')).toBe(0);
    expect(estimatePromptTokens('/v1/chat/completions', { messages: 'nope' })).toBe(0);
    expect(
      estimatePromptTokens('/v1/chat/completions', { messages: [null, 5, { content: { deep: 1 } }] }),
    ).toBe(12);
  });

  it('survives deeply nested content', () => {
    let deep: unknown = 'leaf';
    for (let i = 0; i < 10_000; i++) deep = { content: deep };
    expect(() => estimatePromptTokens('/v1/chat/completions', { messages: [deep] })).not.toThrow();
  });

  it('falls back to the length estimate for huge prompts, and stays fast', () => {
    const chunk = Array.from({ length: 50_000 }, (_, i) => String.fromCharCode(33 + ((i * 31) % 90))).join(
      '',
    );
    const messages = Array.from({ length: 40 }, () => ({ role: 'user', content: chunk }));
    const t0 = performance.now();
    const n = estimatePromptTokens('/v1/chat/completions', { model: 'gpt-4o', messages });
    expect(performance.now() - t0).toBeLessThan(100);
    expect(n).toBe(40 * (50_000 / 4) + 40 * 3 + 3);
  });
});

describe('maxOutputTokens', () => {
  it('reads the limit fields in order of precedence, else the cap', () => {
    expect(maxOutputTokens({ max_completion_tokens: 100, max_tokens: 50 }, 4096)).toBe(100);
    expect(maxOutputTokens({ max_tokens: 50 }, 4096)).toBe(50);
    expect(maxOutputTokens({ max_output_tokens: 70 }, 4096)).toBe(70);
    expect(maxOutputTokens({}, 4096)).toBe(4096);
    expect(maxOutputTokens(null, 4096)).toBe(4096);
  });

  it('ignores invalid values', () => {
    expect(maxOutputTokens({ max_tokens: -5 }, 4096)).toBe(4096);
    expect(maxOutputTokens({ max_tokens: '100' }, 4096)).toBe(4096);
    expect(maxOutputTokens({ max_tokens: 1.5 }, 4096)).toBe(4096);
    expect(maxOutputTokens({ max_tokens: 0 }, 4096)).toBe(4096);
  });

  it('multiplies by n / best_of, and bounds absurd values', () => {
    expect(maxOutputTokens({ max_tokens: 100, n: 3 }, 4096)).toBe(300);
    expect(maxOutputTokens({ max_tokens: 100, n: 2, best_of: 5 }, 4096)).toBe(500);
    const huge = maxOutputTokens({ max_tokens: Number.MAX_SAFE_INTEGER, n: 1_000_000 }, 4096);
    expect(Number.isSafeInteger(huge)).toBe(true);
    expect(huge).toBeGreaterThan(1e9);
  });
});
