/**
 * The upstream price table: loads and validates `prices.json` (USD, human-editable) into integer
 * micro-dollar prices, and resolves a request's model name to a price on the request hot path.
 *
 * Resolution order (see `PriceTable.lookup`): exact name → name without an OpenAI date suffix →
 * longest listed prefix ending at a `-` → configured default price → `undefined` (the caller refuses
 * the request with 400, because serving a model we cannot price would give it away for free).
 */
import { readFileSync } from 'node:fs';
import { usdToMicros, type Micros } from './money.js';

/** Per-image prices of an image model, in micros per image. */
export interface ImagePrice {
  /** Price when the request's quality/size match no variant. */
  readonly defaultMicros: Micros;
  /** Highest price of any variant: used for worst-case reservations. */
  readonly maxMicros: Micros;
  /** Keyed by `quality:size`, `quality` or `size` (lower case). */
  readonly variants: ReadonlyMap<string, Micros>;
}

/** A resolved price, all amounts integer micro-dollars. Token prices are per 1M tokens. */
export interface ModelPrice {
  /** The table key that matched (`*` for the configured default price). */
  readonly model: string;
  readonly inputMicrosPerM: Micros;
  readonly cachedInputMicrosPerM?: Micros;
  readonly outputMicrosPerM: Micros;
  readonly audioInputMicrosPerM?: Micros;
  readonly audioOutputMicrosPerM?: Micros;
  /** Image input tokens (realtime models). */
  readonly imageInputMicrosPerM?: Micros;
  readonly perImage?: ImagePrice;
  /** Per minute of input audio. */
  readonly perMinuteMicros?: Micros;
  /** Per 1M input characters (text to speech). */
  readonly perMillionCharsMicros?: Micros;
}

/** Fallback price for models missing from the table (env, e.g. `"0.15,0.6"` USD per 1M in/out). */
export interface DefaultModelPrice {
  readonly inputMicrosPerM: Micros;
  readonly outputMicrosPerM: Micros;
}

export interface PriceTableOptions {
  readonly defaultPrice?: DefaultModelPrice | undefined;
  /** Percent of the listed prices billed for Batch API requests (the file's `batch_percent`). */
  readonly batchPercent?: number;
}

/** OpenAI bills Batch API requests at half the standard prices. */
export const DEFAULT_BATCH_PERCENT = 50;

/** Thrown by `loadPriceTable` with every problem found, so an operator fixes the file in one pass. */
export class PriceTableError extends Error {
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    super(`invalid price table ${source}:\n  - ${problems.join('\n  - ')}`);
    this.name = 'PriceTableError';
  }
}

/** Default price key in `ModelPrice.model`. */
export const DEFAULT_PRICE_MODEL = '*';

// Client-supplied model names reach the cache; bound it so random names cannot grow memory forever.
const LOOKUP_CACHE_LIMIT = 4096;
// `-2024-08-06` (current snapshots) or `-0613` (gpt-4 / gpt-3.5 era snapshots) at the end.
const DATE_SUFFIX = /-(?:\d{4}-\d{2}-\d{2}|\d{4})$/;
// A generous sanity bound: no real price is anywhere near $1M per 1M tokens / per image.
const MAX_PRICE_USD = 1_000_000;

export class PriceTable {
  private readonly prices: ReadonlyMap<string, ModelPrice>;
  private readonly fallback: ModelPrice | undefined;
  // `null` caches "not priced" too: refused models are looked up on every retry of a bad client.
  private readonly cache = new Map<string, ModelPrice | null>();
  /** Percent of the listed prices billed for Batch API requests. */
  readonly batchPercent: number;

  constructor(prices: Iterable<readonly [string, ModelPrice]>, options: PriceTableOptions = {}) {
    const map = new Map<string, ModelPrice>();
    for (const [name, price] of prices) map.set(name.toLowerCase(), price);
    this.batchPercent = options.batchPercent ?? DEFAULT_BATCH_PERCENT;
    this.prices = map;
    const d = options.defaultPrice;
    this.fallback =
      d === undefined
        ? undefined
        : {
            model: DEFAULT_PRICE_MODEL,
            inputMicrosPerM: d.inputMicrosPerM,
            outputMicrosPerM: d.outputMicrosPerM,
          };
  }

  /** Number of models in the table (without the default price). */
  get size(): number {
    return this.prices.size;
  }

  /** Listed model names, for diagnostics and `/v1/models`-style listings. */
  models(): string[] {
    return [...this.prices.keys()];
  }

  /** Whether a default price is configured for unknown models. */
  get hasDefaultPrice(): boolean {
    return this.fallback !== undefined;
  }

  /**
   * Price of `model`, or `undefined` when it is unknown and no default price is configured.
   * Cached: this runs on every proxied request.
   */
  lookup(model: string): ModelPrice | undefined {
    const hit = this.cache.get(model);
    if (hit !== undefined) return hit ?? undefined;
    const price = this.resolve(model);
    if (this.cache.size >= LOOKUP_CACHE_LIMIT) this.cache.clear();
    this.cache.set(model, price ?? null);
    return price;
  }

  private resolve(model: string): ModelPrice | undefined {
    let name = model.trim().toLowerCase();
    if (name === '') return undefined;
    if (name.startsWith('ft:')) {
      // `ft:gpt-4o-mini-2024-07-18:org:suffix:id`: fine-tuned inference has its own (higher)
      // prices, so only `ft:` entries may match; the base model's price would undercharge.
      const base = name.split(':')[1] ?? '';
      if (base === '') return this.fallback;
      name = `ft:${base}`;
    }
    const exact = this.prices.get(name);
    if (exact) return exact;
    const undated = name.replace(DATE_SUFFIX, '');
    if (undated !== name) {
      const p = this.prices.get(undated);
      if (p) return p;
    }
    // Longest listed prefix ending at a '-': walk the '-' positions from the right. The boundary
    // keeps `gpt-4` from matching `gpt-4o` / `gpt-4.1` and `o1` from matching `o1x`.
    for (let i = undated.lastIndexOf('-'); i > 0; i = undated.lastIndexOf('-', i - 1)) {
      const p = this.prices.get(undated.slice(0, i));
      if (p) return p;
    }
    return this.fallback;
  }
}

/**
 * Parses the `DEFAULT_MODEL_PRICE`-style env value `"<input>,<output>"` (USD per 1M tokens).
 * Empty/undefined → no default price. Malformed → throws, because a silently ignored typo would
 * either give unknown models away or refuse them all.
 */
export function parseDefaultModelPrice(s: string | undefined): DefaultModelPrice | undefined {
  if (s === undefined || s.trim() === '') return undefined;
  const parts = s.split(',').map((p) => p.trim());
  const [inp, out] = parts;
  if (parts.length !== 2 || inp === undefined || out === undefined) {
    throw new RangeError(`default model price must be "<input>,<output>" USD per 1M tokens, got "${s}"`);
  }
  return {
    inputMicrosPerM: parseUsdField(inp, 'input', s),
    outputMicrosPerM: parseUsdField(out, 'output', s),
  };
}

function parseUsdField(v: string, what: string, whole: string): Micros {
  // Number('') is 0 and Number('0x10') is 16: insist on a plain decimal.
  if (!/^\d+(?:\.\d+)?$/.test(v))
    throw new RangeError(`default model price: bad ${what} "${v}" in "${whole}"`);
  const n = Number(v);
  if (n > MAX_PRICE_USD) throw new RangeError(`default model price: ${what} ${v} is implausibly high`);
  return usdToMicros(n);
}

/** Reads, validates and converts a price table file; throws `PriceTableError` listing every problem. */
export function loadPriceTable(path: string, options: PriceTableOptions = {}): PriceTable {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new PriceTableError(path, [err instanceof Error ? err.message : String(err)]);
  }
  const { prices, problems, batchPercent } = parsePriceTable(json);
  if (problems.length > 0) throw new PriceTableError(path, problems);
  return new PriceTable(prices, { ...options, batchPercent });
}

/**
 * Validates parsed price-table JSON. Never throws: returns the good entries and one message per
 * problem (`loadPriceTable` refuses the whole file if there is any).
 */
export function parsePriceTable(json: unknown): {
  prices: Map<string, ModelPrice>;
  problems: string[];
  batchPercent: number;
} {
  const prices = new Map<string, ModelPrice>();
  const problems: string[] = [];
  let batchPercent = DEFAULT_BATCH_PERCENT;
  if (!isRecord(json)) {
    return { prices, problems: ['top level must be an object with a "models" object'], batchPercent };
  }
  for (const key of Object.keys(json)) {
    if (key !== 'models' && key !== 'batch_percent' && !key.startsWith('$'))
      problems.push(`unknown top-level field "${key}"`);
  }
  const batch = json['batch_percent'];
  if (batch !== undefined) {
    if (typeof batch === 'number' && Number.isInteger(batch) && batch >= 1 && batch <= 100)
      batchPercent = batch;
    else problems.push(`"batch_percent" must be a whole number from 1 to 100, got ${show(batch)}`);
  }
  const models = json['models'];
  if (!isRecord(models)) {
    problems.push('"models" must be an object mapping model name → price');
    return { prices, problems, batchPercent };
  }
  for (const [name, entry] of Object.entries(models)) {
    if (name.startsWith('$')) continue;
    const price = parseEntry(name, entry, problems);
    if (price) prices.set(name, price);
  }
  return { prices, problems, batchPercent };
}

const TOKEN_FIELDS = [
  'input',
  'cached_input',
  'output',
  'audio_input',
  'audio_output',
  'image_input',
] as const;
const KNOWN_FIELDS = new Set<string>([
  ...TOKEN_FIELDS,
  'per_image',
  'per_minute',
  'per_million_chars',
  '$comment',
]);

function parseEntry(name: string, entry: unknown, problems: string[]): ModelPrice | undefined {
  const before = problems.length;
  const where = `model "${name}"`;
  if (name.trim() !== name || name === '' || name !== name.toLowerCase()) {
    // Lookups are case-insensitive on the request side; a mixed-case key could never match.
    problems.push(`${where}: name must be non-empty, lower case, without surrounding spaces`);
  }
  if (!isRecord(entry)) {
    problems.push(`${where}: must be an object`);
    return undefined;
  }
  for (const field of Object.keys(entry)) {
    if (!KNOWN_FIELDS.has(field)) problems.push(`${where}: unknown field "${field}"`);
  }
  const usd = (field: string): Micros | undefined => {
    const v = entry[field];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > MAX_PRICE_USD) {
      problems.push(
        `${where}: "${field}" must be a number of USD between 0 and ${MAX_PRICE_USD}, got ${show(v)}`,
      );
      return undefined;
    }
    return usdToMicros(v);
  };
  const input = usd('input');
  const cached = usd('cached_input');
  const output = usd('output');
  const audioIn = usd('audio_input');
  const audioOut = usd('audio_output');
  const imageIn = usd('image_input');
  const perMinute = usd('per_minute');
  const perChars = usd('per_million_chars');
  const perImage = parseImagePrice(where, entry['per_image'], problems);

  const has = (f: string): boolean => entry[f] !== undefined;
  if (has('input') !== has('output')) problems.push(`${where}: "input" and "output" must be given together`);
  if (
    (has('cached_input') || has('audio_input') || has('audio_output') || has('image_input')) &&
    !has('input')
  ) {
    problems.push(
      `${where}: "cached_input"/"audio_input"/"audio_output"/"image_input" need "input" and "output"`,
    );
  }
  if (!has('input') && !has('per_image') && !has('per_minute') && !has('per_million_chars')) {
    problems.push(
      `${where}: needs at least one of "input"+"output", "per_image", "per_minute", "per_million_chars"`,
    );
  }
  if (cached !== undefined && input !== undefined && cached > input) {
    problems.push(
      `${where}: "cached_input" (${show(entry['cached_input'])}) exceeds "input" (${show(entry['input'])})`,
    );
  }
  if (problems.length > before) return undefined;

  return {
    model: name,
    inputMicrosPerM: input ?? 0,
    outputMicrosPerM: output ?? 0,
    ...(cached !== undefined && { cachedInputMicrosPerM: cached }),
    ...(audioIn !== undefined && { audioInputMicrosPerM: audioIn }),
    ...(audioOut !== undefined && { audioOutputMicrosPerM: audioOut }),
    ...(imageIn !== undefined && { imageInputMicrosPerM: imageIn }),
    ...(perImage !== undefined && { perImage }),
    ...(perMinute !== undefined && { perMinuteMicros: perMinute }),
    ...(perChars !== undefined && { perMillionCharsMicros: perChars }),
  };
}

function parseImagePrice(where: string, v: unknown, problems: string[]): ImagePrice | undefined {
  if (v === undefined) return undefined;
  const valid = (x: unknown): x is number =>
    typeof x === 'number' && Number.isFinite(x) && x >= 0 && x <= MAX_PRICE_USD;
  if (typeof v === 'number') {
    if (!valid(v)) {
      problems.push(
        `${where}: "per_image" must be a number of USD between 0 and ${MAX_PRICE_USD}, got ${show(v)}`,
      );
      return undefined;
    }
    const m = usdToMicros(v);
    return { defaultMicros: m, maxMicros: m, variants: new Map() };
  }
  if (!isRecord(v)) {
    problems.push(`${where}: "per_image" must be a number or an object of "quality:size" → USD`);
    return undefined;
  }
  const variants = new Map<string, Micros>();
  let ok = true;
  for (const [k, x] of Object.entries(v)) {
    if (!valid(x)) {
      problems.push(
        `${where}: "per_image.${k}" must be a number of USD between 0 and ${MAX_PRICE_USD}, got ${show(x)}`,
      );
      ok = false;
    } else if (k !== k.toLowerCase()) {
      problems.push(`${where}: "per_image.${k}" key must be lower case`);
      ok = false;
    } else {
      variants.set(k, usdToMicros(x));
    }
  }
  const def = variants.get('default');
  if (def === undefined) {
    if (!('default' in v)) problems.push(`${where}: "per_image" object needs a "default" price`);
    return undefined;
  }
  if (!ok) return undefined;
  variants.delete('default');
  let max = def;
  for (const m of variants.values()) if (m > max) max = m;
  return { defaultMicros: def, maxMicros: max, variants };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}
