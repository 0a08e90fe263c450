// Unit tests of the price table: the shipped config/prices.json, validation messages, model-name resolution
// and the default-price env parsing.
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_PRICE_MODEL,
  PriceTable,
  PriceTableError,
  loadPriceTable,
  parseDefaultModelPrice,
  parsePriceTable,
  type ModelPrice,
} from '../../src/billing/price-table.js';
import { fileTempDir } from '../support/temp-dirs.js';

const SHIPPED = fileURLToPath(new URL('../../config/prices.json', import.meta.url));

function writeTable(json: unknown): string {
  const dir = fileTempDir('prices-');
  const path = join(dir, 'prices.json');
  writeFileSync(path, typeof json === 'string' ? json : JSON.stringify(json));
  return path;
}

function tokenPrice(model: string, input: number, output: number): [string, ModelPrice] {
  return [model, { model, inputMicrosPerM: input, outputMicrosPerM: output }];
}

describe('shipped prices.json', () => {
  const { prices, problems } = parsePriceTable(JSON.parse(readFileSync(SHIPPED, 'utf8')));

  it('loads with zero problems', () => {
    expect(problems).toEqual([]);
    expect(() => loadPriceTable(SHIPPED)).not.toThrow();
  });

  it('prices every model the gateway is expected to serve', () => {
    const table = loadPriceTable(SHIPPED);
    for (const model of [
      'gpt-4o',
      'gpt-4o-mini',
      'gpt-4.1',
      'gpt-4.1-mini',
      'gpt-4.1-nano',
      'gpt-5',
      'gpt-5-mini',
      'gpt-5-nano',
      'o1',
      'o3',
      'o3-mini',
      'o4-mini',
      'gpt-4-turbo',
      'gpt-4',
      'gpt-3.5-turbo',
      'text-embedding-3-small',
      'text-embedding-3-large',
      'text-embedding-ada-002',
      'omni-moderation-latest',
      'dall-e-3',
      'dall-e-2',
      'gpt-image-1',
      'whisper-1',
      'gpt-4o-transcribe',
      'tts-1',
      'tts-1-hd',
    ]) {
      expect(table.lookup(model)?.model, model).toBe(model);
    }
  });

  it('has the expected shapes for sample models', () => {
    expect(prices.get('gpt-4o')).toEqual({
      model: 'gpt-4o',
      inputMicrosPerM: 2_500_000,
      cachedInputMicrosPerM: 1_250_000,
      outputMicrosPerM: 10_000_000,
    });
    expect(prices.get('omni-moderation-latest')).toMatchObject({ inputMicrosPerM: 0, outputMicrosPerM: 0 });
    expect(prices.get('whisper-1')).toMatchObject({ perMinuteMicros: 6_000, inputMicrosPerM: 0 });
    expect(prices.get('tts-1')).toMatchObject({ perMillionCharsMicros: 15_000_000 });
    const dalle3 = prices.get('dall-e-3')?.perImage;
    expect(dalle3?.defaultMicros).toBe(40_000);
    expect(dalle3?.maxMicros).toBe(120_000);
    expect(dalle3?.variants.get('hd:1024x1024')).toBe(80_000);
    expect(dalle3?.variants.has('default')).toBe(false);
  });

  it('never prices cached input above input', () => {
    for (const p of prices.values()) {
      if (p.cachedInputMicrosPerM !== undefined)
        expect(p.cachedInputMicrosPerM).toBeLessThanOrEqual(p.inputMicrosPerM);
    }
  });
});

describe('validation', () => {
  it('reports every bad entry, each naming its model and field', () => {
    const { prices, problems } = parsePriceTable({
      $comment: 'x',
      models: {
        good: { input: 1, output: 2 },
        'neg-price': { input: -1, output: 2 },
        'string-price': { input: '1', output: 2 },
        'typo-field': { input: 1, ouptut: 2 },
        'half-tokens': { input: 1 },
        nothing: { $comment: 'no price' },
        'cached-too-high': { input: 1, cached_input: 2, output: 2 },
        'Upper-Case': { input: 1, output: 1 },
        'not-object': 5,
        'bad-image': { per_image: { '1024x1024': 0.1 } },
        'bad-image-value': { per_image: { default: 0.1, hd: 'x' } },
        'inf-price': { per_minute: Number.POSITIVE_INFINITY },
      },
    });
    expect([...prices.keys()]).toEqual(['good']);
    const text = problems.join('\n');
    expect(text).toContain('model "neg-price": "input" must be a number');
    expect(text).toContain(
      'model "string-price": "input" must be a number of USD between 0 and 1000000, got "1"',
    );
    expect(text).toContain('model "typo-field": unknown field "ouptut"');
    expect(text).toContain('model "half-tokens": "input" and "output" must be given together');
    expect(text).toContain('model "nothing": needs at least one of');
    expect(text).toContain('model "cached-too-high": "cached_input" (2) exceeds "input" (1)');
    expect(text).toContain('model "Upper-Case": name must be');
    expect(text).toContain('model "not-object": must be an object');
    expect(text).toContain('model "bad-image": "per_image" object needs a "default" price');
    expect(text).toContain('model "bad-image-value": "per_image.hd" must be a number');
    expect(text).toContain('model "inf-price": "per_minute" must be a number');
    expect(problems.length).toBeGreaterThanOrEqual(11);
  });

  it('rejects a malformed top level', () => {
    expect(parsePriceTable([]).problems).toEqual(['top level must be an object with a "models" object']);
    expect(parsePriceTable({ models: [] }).problems[0]).toContain('"models" must be an object');
    expect(parsePriceTable({ models: {}, extra: 1 }).problems).toEqual(['unknown top-level field "extra"']);
  });

  it('loadPriceTable throws PriceTableError listing all problems, and on bad JSON', () => {
    const path = writeTable({ models: { a: { input: -1, output: 1 }, b: { input: 1 } } });
    try {
      loadPriceTable(path);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(PriceTableError);
      const e = err as PriceTableError;
      expect(e.problems).toHaveLength(2);
      expect(e.message).toContain(path);
      expect(e.message).toContain('model "a"');
      expect(e.message).toContain('model "b"');
    }
    expect(() => loadPriceTable(writeTable('{ not json'))).toThrow(PriceTableError);
    expect(() => loadPriceTable(join(tmpdir(), 'does-not-exist-prices.json'))).toThrow(PriceTableError);
  });

  it('converts USD to exact integer micros', () => {
    const { prices } = parsePriceTable({
      models: { m: { input: 0.1, cached_input: 0.025, output: 0.3 }, i: { per_image: 0.016 } },
    });
    expect(prices.get('m')).toEqual({
      model: 'm',
      inputMicrosPerM: 100_000,
      cachedInputMicrosPerM: 25_000,
      outputMicrosPerM: 300_000,
    });
    expect(prices.get('i')?.perImage).toEqual({
      defaultMicros: 16_000,
      maxMicros: 16_000,
      variants: new Map(),
    });
  });
});

describe('PriceTable.lookup', () => {
  const table = loadPriceTable(SHIPPED);

  it('matches exactly, case-insensitively', () => {
    expect(table.lookup('gpt-4o-mini')?.model).toBe('gpt-4o-mini');
    expect(table.lookup(' GPT-4o ')?.model).toBe('gpt-4o');
  });

  it('strips OpenAI date suffixes', () => {
    expect(table.lookup('gpt-4o-2024-08-06')?.model).toBe('gpt-4o');
    expect(table.lookup('gpt-4o-mini-2024-07-18')?.model).toBe('gpt-4o-mini');
    expect(table.lookup('gpt-4-0613')?.model).toBe('gpt-4');
    expect(table.lookup('gpt-4-32k-0613')?.model).toBe('gpt-4-32k');
    expect(table.lookup('gpt-3.5-turbo-0125')?.model).toBe('gpt-3.5-turbo');
    expect(table.lookup('gpt-3.5-turbo-16k-0613')?.model).toBe('gpt-3.5-turbo-16k');
    expect(table.lookup('o1-preview-2024-09-12')?.model).toBe('o1-preview');
    expect(table.lookup('gpt-5-2025-08-07')?.model).toBe('gpt-5');
    expect(table.lookup('omni-moderation-2024-09-26')?.model).toBe('omni-moderation');
  });

  it('prefers an exact snapshot entry with its own price over the stripped name', () => {
    expect(table.lookup('gpt-4o-2024-05-13')?.inputMicrosPerM).toBe(5_000_000);
    expect(table.lookup('gpt-4-1106-preview')?.model).toBe('gpt-4-1106-preview');
    expect(table.lookup('gpt-4-1106-preview')?.inputMicrosPerM).toBe(10_000_000);
  });

  it('falls back to the longest known prefix at a "-" boundary', () => {
    expect(table.lookup('gpt-4o-mini-search-preview-2025-03-11')?.model).toBe('gpt-4o-mini-search-preview');
    expect(table.lookup('gpt-4o-something-new')?.model).toBe('gpt-4o');
    expect(table.lookup('gpt-4o-mini-something')?.model).toBe('gpt-4o-mini');
    expect(table.lookup('gpt-4.5-preview-2025-02-27')?.model).toBe('gpt-4.5-preview');
    expect(table.lookup('gpt-5-pro-2025-10-06')?.model).toBe('gpt-5-pro');
    expect(table.lookup('o3-deep-research-2025-06-26')?.model).toBe('o3-deep-research');
  });

  it('does not match across a non "-" boundary', () => {
    // gpt-4 must not price gpt-4o / gpt-4.7, nor o1 price o10.
    expect(table.lookup('gpt-4.7')).toBeUndefined();
    expect(table.lookup('o10')).toBeUndefined();
    expect(table.lookup('gpt-4oz')).toBeUndefined();
    expect(table.lookup('totally-unknown')).toBeUndefined();
    expect(table.lookup('')).toBeUndefined();
  });

  it('prices fine-tuned models only from ft: entries', () => {
    expect(table.lookup('ft:gpt-4o-mini-2024-07-18:acme::abc123')?.model).toBe('ft:gpt-4o-mini');
    expect(table.lookup('ft:gpt-4.1-2025-04-14:acme:custom:xyz')?.model).toBe('ft:gpt-4.1');
    expect(table.lookup('ft:gpt-4o-mini:acme')?.inputMicrosPerM).toBe(300_000);
    // No ft: entry for gpt-5: never fall back to the (cheaper) base price.
    expect(table.lookup('ft:gpt-5:acme::x')).toBeUndefined();
    expect(table.lookup('ft:')).toBeUndefined();
  });

  it('uses the configured default price for unknown models', () => {
    const withDefault = loadPriceTable(SHIPPED, { defaultPrice: parseDefaultModelPrice('0.15,0.6') });
    expect(withDefault.hasDefaultPrice).toBe(true);
    expect(withDefault.lookup('llama-99')).toEqual({
      model: DEFAULT_PRICE_MODEL,
      inputMicrosPerM: 150_000,
      outputMicrosPerM: 600_000,
    });
    expect(withDefault.lookup('ft:gpt-5:acme::x')?.model).toBe(DEFAULT_PRICE_MODEL);
    expect(withDefault.lookup('gpt-4o')?.model).toBe('gpt-4o');
  });

  it('caches results (including misses) and stays bounded', () => {
    const t = new PriceTable([tokenPrice('a', 1, 2)]);
    const first = t.lookup('a-2024-01-01');
    expect(t.lookup('a-2024-01-01')).toBe(first);
    expect(t.lookup('zzz')).toBeUndefined();
    expect(t.lookup('zzz')).toBeUndefined();
    for (let i = 0; i < 10_000; i++) t.lookup(`random-${i}`);
    expect(t.lookup('a')?.model).toBe('a');
  });

  it('exposes size and models', () => {
    const t = new PriceTable([tokenPrice('a', 1, 2), tokenPrice('b', 1, 2)]);
    expect(t.size).toBe(2);
    expect(t.models().sort()).toEqual(['a', 'b']);
    expect(t.hasDefaultPrice).toBe(false);
  });
});

describe('parseDefaultModelPrice', () => {
  it('parses "input,output" USD per 1M into micros', () => {
    expect(parseDefaultModelPrice('0.15,0.6')).toEqual({
      inputMicrosPerM: 150_000,
      outputMicrosPerM: 600_000,
    });
    expect(parseDefaultModelPrice(' 2 , 8 ')).toEqual({
      inputMicrosPerM: 2_000_000,
      outputMicrosPerM: 8_000_000,
    });
    expect(parseDefaultModelPrice('0,0')).toEqual({ inputMicrosPerM: 0, outputMicrosPerM: 0 });
  });

  it('treats empty as unset', () => {
    expect(parseDefaultModelPrice(undefined)).toBeUndefined();
    expect(parseDefaultModelPrice('')).toBeUndefined();
    expect(parseDefaultModelPrice('  ')).toBeUndefined();
  });

  it('throws on malformed values', () => {
    for (const bad of [
      '0.15',
      '0.15,0.6,1',
      'a,b',
      '-1,2',
      '1,',
      ',1',
      '0x10,1',
      '1e3,1',
      'NaN,1',
      '2000000,1',
    ]) {
      expect(() => parseDefaultModelPrice(bad), bad).toThrow(RangeError);
    }
  });
});
