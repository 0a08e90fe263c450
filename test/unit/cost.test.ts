// Unit tests of cost computation (exact and worst case) and of parsing OpenAI usage objects.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  computeCost,
  imageMicros,
  usageFromOpenAI,
  worstCaseCost,
  type Usage,
} from '../../src/billing/cost.js';
import { RATE_ONE, usageCost, usageCostBig } from '../../src/billing/money.js';
import type { ModelPrice } from '../../src/billing/price-table.js';
import { parsePriceTable } from '../../src/billing/price-table.js';

const gpt4o: ModelPrice = {
  model: 'gpt-4o',
  inputMicrosPerM: 2_500_000,
  cachedInputMicrosPerM: 1_250_000,
  outputMicrosPerM: 10_000_000,
};
const noCache: ModelPrice = { model: 'gpt-4', inputMicrosPerM: 30_000_000, outputMicrosPerM: 60_000_000 };

const tokens = (promptTokens: number, completionTokens: number, cachedTokens = 0): Usage => ({
  promptTokens,
  completionTokens,
  cachedTokens,
});

describe('computeCost', () => {
  it('bills prompt at input and completion at output price, rounded up to the micro', () => {
    // 1M in ($2.50) + 1M out ($10) = $12.50
    expect(computeCost(gpt4o, tokens(1_000_000, 1_000_000), RATE_ONE)).toBe(12_500_000);
    // 1 prompt token = 2.5 micros → 3 micros (ceil)
    expect(computeCost(gpt4o, tokens(1, 0), RATE_ONE)).toBe(3);
    expect(computeCost(gpt4o, tokens(0, 0), RATE_ONE)).toBe(0);
  });

  it('bills reasoning tokens as the output they are part of, never twice', () => {
    const plain = computeCost(gpt4o, tokens(1_000, 500), RATE_ONE);
    expect(computeCost(gpt4o, { ...tokens(1_000, 500), reasoningTokens: 400 }, RATE_ONE)).toBe(plain);
  });

  it('bills cached tokens (part of prompt) at the cached price', () => {
    // 1000 prompt of which 400 cached: 600*2.5 + 400*1.25 = 2000 micros, + 100 out *10 = 1000
    expect(computeCost(gpt4o, tokens(1000, 100, 400), RATE_ONE)).toBe(3000);
  });

  it('bills cached tokens at the input price when the model has no cached price', () => {
    expect(computeCost(noCache, tokens(1000, 0, 400), RATE_ONE)).toBe(
      computeCost(noCache, tokens(1000, 0), RATE_ONE),
    );
  });

  it('clamps cached > prompt and ignores garbage counts', () => {
    expect(computeCost(gpt4o, tokens(100, 0, 1000), RATE_ONE)).toBe(125);
    expect(computeCost(gpt4o, tokens(-5, Number.NaN, -1), RATE_ONE)).toBe(0);
    expect(computeCost(gpt4o, tokens(1.5, Infinity), RATE_ONE)).toBe(0);
  });

  it('applies account rates', () => {
    expect(computeCost(gpt4o, tokens(1_000_000, 0), 2_500_000)).toBe(6_250_000);
    expect(computeCost(gpt4o, tokens(1_000_000, 0), 500_000)).toBe(1_250_000);
  });

  it('bills audio tokens at audio prices', () => {
    const audio: ModelPrice = {
      model: 'gpt-4o-audio-preview',
      inputMicrosPerM: 2_500_000,
      outputMicrosPerM: 10_000_000,
      audioInputMicrosPerM: 40_000_000,
      audioOutputMicrosPerM: 80_000_000,
    };
    const u: Usage = { ...tokens(1000, 500), audioPromptTokens: 600, audioCompletionTokens: 400 };
    // text in 400*2.5=1000, audio in 600*40=24000, text out 100*10=1000, audio out 400*80=32000
    expect(computeCost(audio, u, RATE_ONE)).toBe(58_000);
    // Without audio prices, audio tokens are ordinary tokens.
    expect(computeCost(gpt4o, u, RATE_ONE)).toBe(computeCost(gpt4o, tokens(1000, 500), RATE_ONE));
  });

  it('bills realtime usage: text, audio, image, cached text and cached audio at their own prices', () => {
    const realtime: ModelPrice = {
      model: 'gpt-realtime',
      inputMicrosPerM: 4_000_000,
      cachedInputMicrosPerM: 400_000,
      outputMicrosPerM: 16_000_000,
      audioInputMicrosPerM: 32_000_000,
      audioOutputMicrosPerM: 64_000_000,
      imageInputMicrosPerM: 5_000_000,
    };
    const u = usageFromOpenAI({
      total_tokens: 2300,
      input_tokens: 2000,
      output_tokens: 300,
      input_token_details: {
        text_tokens: 700,
        audio_tokens: 1000,
        image_tokens: 300,
        cached_tokens: 900,
        cached_tokens_details: { text_tokens: 500, audio_tokens: 400, image_tokens: 0 },
      },
      output_token_details: { text_tokens: 100, audio_tokens: 200 },
    });
    expect(u).toEqual({
      promptTokens: 2000,
      cachedTokens: 900,
      completionTokens: 300,
      audioPromptTokens: 1000,
      imagePromptTokens: 300,
      cachedAudioTokens: 400,
      audioCompletionTokens: 200,
    });
    // text in (700-500)*4 = 800; cached text 500*0.4 = 200; image 300*5 = 1500;
    // audio in (1000-400)*32 = 19200; cached audio 400*0.4 = 160; text out 100*16 = 1600;
    // audio out 200*64 = 12800 → 36,260 micros
    expect(computeCost(realtime, u as Usage, RATE_ONE)).toBe(36_260);
  });

  it('bills images by quality/size variant', () => {
    const { prices } = parsePriceTable({
      models: {
        'dall-e-3': { per_image: { default: 0.04, '1792x1024': 0.08, hd: 0.12, 'hd:1024x1024': 0.08 } },
      },
    });
    const dalle = prices.get('dall-e-3');
    if (!dalle) throw new Error('missing');
    const img = (images: number, imageQuality?: string, imageSize?: string): Usage => ({
      ...tokens(0, 0),
      images,
      ...(imageQuality !== undefined && { imageQuality }),
      ...(imageSize !== undefined && { imageSize }),
    });
    expect(computeCost(dalle, img(1), RATE_ONE)).toBe(40_000);
    expect(computeCost(dalle, img(2, undefined, '1792x1024'), RATE_ONE)).toBe(160_000);
    expect(computeCost(dalle, img(1, 'HD', '1024x1024'), RATE_ONE)).toBe(80_000);
    expect(computeCost(dalle, img(1, 'hd', '1792x1024'), RATE_ONE)).toBe(120_000);
    expect(computeCost(dalle, img(1, 'standard', '1792x1024'), RATE_ONE)).toBe(80_000);
    expect(computeCost(dalle, img(1, 'weird', 'weird'), RATE_ONE)).toBe(40_000);
    expect(imageMicros(undefined, 'hd')).toBeUndefined();
    // A model without per-image prices does not bill images.
    expect(computeCost(gpt4o, img(3), RATE_ONE)).toBe(0);
  });

  it('bills audio minutes and tts characters', () => {
    const whisper: ModelPrice = {
      model: 'whisper-1',
      inputMicrosPerM: 0,
      outputMicrosPerM: 0,
      perMinuteMicros: 6_000,
    };
    expect(computeCost(whisper, { ...tokens(0, 0), audioSeconds: 60 }, RATE_ONE)).toBe(6_000);
    expect(computeCost(whisper, { ...tokens(0, 0), audioSeconds: 30 }, RATE_ONE)).toBe(3_000);
    // 1 second = 100 micros; 0.5 s = 8333.3 millionths of a minute, rounded up twice (to the
    // millionth of a minute, then to the micro): at most one micro-dollar above 50.
    expect(computeCost(whisper, { ...tokens(0, 0), audioSeconds: 0.5 }, RATE_ONE)).toBe(51);
    expect(computeCost(whisper, { ...tokens(0, 0), audioSeconds: 1 }, RATE_ONE)).toBe(101);
    expect(computeCost(whisper, { ...tokens(0, 0), audioSeconds: 6 }, RATE_ONE)).toBe(600);
    const tts: ModelPrice = {
      model: 'tts-1',
      inputMicrosPerM: 0,
      outputMicrosPerM: 0,
      perMillionCharsMicros: 15_000_000,
    };
    expect(computeCost(tts, { ...tokens(0, 0), characters: 1000 }, RATE_ONE)).toBe(15_000);
  });

  it('is monotonic in every token count (property)', () => {
    fc.assert(
      fc.property(
        fc.nat(10_000_000),
        fc.nat(10_000_000),
        fc.nat(10_000_000),
        fc.nat(1000),
        (p, c, cached, extra) => {
          const base = computeCost(gpt4o, tokens(p, c, cached), RATE_ONE);
          expect(base).toBeGreaterThanOrEqual(0);
          expect(Number.isSafeInteger(base)).toBe(true);
          expect(computeCost(gpt4o, tokens(p + extra, c, cached), RATE_ONE)).toBeGreaterThanOrEqual(base);
          expect(computeCost(gpt4o, tokens(p, c + extra, cached), RATE_ONE)).toBeGreaterThanOrEqual(base);
          // Worst case with the same counts never undercuts the exact cost.
          expect(worstCaseCost(gpt4o, p, c, RATE_ONE)).toBeGreaterThanOrEqual(base);
        },
      ),
    );
  });
});

describe('worstCaseCost', () => {
  it('prices the prompt estimate at input and max output at output price', () => {
    expect(worstCaseCost(gpt4o, 1000, 1000, RATE_ONE)).toBe(12_500);
  });

  it('uses the most expensive token kind and image variant', () => {
    const p: ModelPrice = {
      model: 'x',
      inputMicrosPerM: 1_000_000,
      outputMicrosPerM: 2_000_000,
      audioInputMicrosPerM: 10_000_000,
      audioOutputMicrosPerM: 20_000_000,
      perImage: { defaultMicros: 40_000, maxMicros: 120_000, variants: new Map([['hd', 120_000]]) },
    };
    expect(worstCaseCost(p, 1_000_000, 1_000_000, RATE_ONE, { images: 2 })).toBe(30_000_000 + 240_000);
  });

  it('rounds fractional estimates up and saturates absurd ones instead of dropping them', () => {
    expect(worstCaseCost(gpt4o, 0.2, 0, RATE_ONE)).toBe(3);
    const huge = worstCaseCost(gpt4o, 1e300, Infinity, RATE_ONE);
    expect(Number.isSafeInteger(huge)).toBe(true);
    expect(huge).toBeGreaterThan(1e12);
    expect(worstCaseCost(gpt4o, Number.NaN, -1, RATE_ONE)).toBe(0);
  });

  it('includes audio minutes and characters', () => {
    const p: ModelPrice = {
      model: 'y',
      inputMicrosPerM: 0,
      outputMicrosPerM: 0,
      perMinuteMicros: 6_000,
      perMillionCharsMicros: 15_000_000,
    };
    expect(worstCaseCost(p, 0, 0, RATE_ONE, { audioSeconds: 120, characters: 1000 })).toBe(12_000 + 15_000);
  });
});

describe('usageFromOpenAI', () => {
  it('parses chat completions usage', () => {
    expect(
      usageFromOpenAI({
        prompt_tokens: 1200,
        completion_tokens: 300,
        total_tokens: 1500,
        prompt_tokens_details: { cached_tokens: 1024, audio_tokens: 0 },
        completion_tokens_details: { reasoning_tokens: 200, audio_tokens: 0 },
      }),
    ).toEqual({ promptTokens: 1200, cachedTokens: 1024, completionTokens: 300, reasoningTokens: 200 });
  });

  it('parses responses API usage', () => {
    expect(
      usageFromOpenAI({
        input_tokens: 50,
        input_tokens_details: { cached_tokens: 10 },
        output_tokens: 20,
        output_tokens_details: { reasoning_tokens: 5 },
        total_tokens: 70,
      }),
    ).toEqual({ promptTokens: 50, cachedTokens: 10, completionTokens: 20, reasoningTokens: 5 });
  });

  it('parses embeddings usage (prompt only)', () => {
    expect(usageFromOpenAI({ prompt_tokens: 8, total_tokens: 8 })).toEqual({
      promptTokens: 8,
      cachedTokens: 0,
      completionTokens: 0,
    });
  });

  it('parses audio token details and transcription usage', () => {
    expect(
      usageFromOpenAI({
        prompt_tokens: 100,
        completion_tokens: 50,
        prompt_tokens_details: { audio_tokens: 80 },
        completion_tokens_details: { audio_tokens: 40 },
      }),
    ).toEqual({
      promptTokens: 100,
      cachedTokens: 0,
      completionTokens: 50,
      audioPromptTokens: 80,
      audioCompletionTokens: 40,
    });
    expect(
      usageFromOpenAI({
        type: 'tokens',
        input_tokens: 30,
        input_token_details: { text_tokens: 5, audio_tokens: 25 },
        output_tokens: 10,
        total_tokens: 40,
      }),
    ).toEqual({ promptTokens: 30, cachedTokens: 0, completionTokens: 10, audioPromptTokens: 25 });
    expect(usageFromOpenAI({ type: 'duration', seconds: 12.5 })).toEqual({
      promptTokens: 0,
      cachedTokens: 0,
      completionTokens: 0,
      audioSeconds: 12.5,
    });
    expect(usageFromOpenAI({ type: 'duration', seconds: -1 })).toBeUndefined();
  });

  it('ignores garbage fields and garbage objects', () => {
    expect(usageFromOpenAI(null)).toBeUndefined();
    expect(usageFromOpenAI('usage')).toBeUndefined();
    expect(usageFromOpenAI([1, 2])).toBeUndefined();
    expect(usageFromOpenAI({})).toBeUndefined();
    expect(usageFromOpenAI({ total_tokens: 5 })).toBeUndefined();
    expect(usageFromOpenAI({ prompt_tokens: '5', completion_tokens: -3 })).toBeUndefined();
    expect(
      usageFromOpenAI({
        prompt_tokens: 10,
        completion_tokens: 2.5,
        prompt_tokens_details: { cached_tokens: 'lots' },
      }),
    ).toEqual({ promptTokens: 10, cachedTokens: 0, completionTokens: 0 });
    expect(usageFromOpenAI({ prompt_tokens: 1e300, completion_tokens: 4 })).toEqual({
      promptTokens: 0,
      cachedTokens: 0,
      completionTokens: 4,
    });
  });

  it('never throws on arbitrary JSON (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const u = usageFromOpenAI(v);
        if (u !== undefined) {
          for (const n of [u.promptTokens, u.cachedTokens, u.completionTokens]) {
            expect(Number.isSafeInteger(n) && n >= 0).toBe(true);
          }
        }
      }),
    );
  });
});

describe('usageCost', () => {
  const line = fc.record({
    units: fc.oneof(
      fc.integer({ min: 0, max: 10_000_000 }),
      fc.integer({ min: 0, max: 1e12 }),
      fc.double({ min: 0, max: 1e9, noNaN: true }),
    ),
    microsPerMillion: fc.oneof(fc.integer({ min: 0, max: 200_000_000 }), fc.integer({ min: 0, max: 1e12 })),
  });
  const rates = fc.oneof(fc.constant(RATE_ONE), fc.integer({ min: 1, max: 1e12 }));

  it('gives exactly the BigInt result on the fast path and on the fallback', () => {
    fc.assert(
      fc.property(fc.array(line, { maxLength: 6 }), rates, (lines, r) => {
        expect(usageCost(lines, r)).toBe(usageCostBig(lines, r));
      }),
      { numRuns: 20_000 },
    );
  });

  it('rounds up at the exact boundaries', () => {
    // 1M tokens at 1 micro per 1M tokens, at rates 1.0: exactly 1 micro; one unit more rounds up.
    expect(usageCost([{ units: 1_000_000, microsPerMillion: 1 }], RATE_ONE)).toBe(1);
    expect(usageCost([{ units: 1_000_001, microsPerMillion: 1 }], RATE_ONE)).toBe(2);
    expect(usageCost([{ units: 1, microsPerMillion: 1 }], RATE_ONE)).toBe(1);
    // Near 2^53: the fallback takes over and still rounds exactly.
    const big = [{ units: 9_007_199_254, microsPerMillion: 1_000_000 }];
    expect(usageCost(big, RATE_ONE)).toBe(usageCostBig(big, RATE_ONE));
    expect(usageCost(big, 3 * RATE_ONE)).toBe(usageCostBig(big, 3 * RATE_ONE));
  });
});
