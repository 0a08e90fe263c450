/**
 * Money arithmetic. All credit is integer micro-dollars (1e-6 USD) held in JS numbers that are
 * always safe integers; products that could exceed 2^53 go through BigInt. This is the only module
 * that multiplies or divides money: everything else adds and subtracts `Micros`.
 *
 * `Rates` (the resale multiplier of an account) is stored as integer millionths too, so that
 * `2.5` is `2_500_000` and conversions between accounts stay exact rationals.
 */

/** Integer micro-dollars. */
export type Micros = number;
/** Account price multiplier in millionths (1.0 → 1_000_000). */
export type RateMicros = number;

export const MICROS_PER_USD = 1_000_000;
export const RATE_ONE: RateMicros = 1_000_000;
/** Largest amount accepted from an API body: $1e9 = 1e15 micros, below 2^53. */
export const MAX_USD = 1e9;

/** Parses a decimal USD number from an API body into micros (rounded half away from zero). */
export function usdToMicros(usd: number): Micros {
  if (!Number.isFinite(usd) || Math.abs(usd) > MAX_USD) throw new RangeError(`amount out of range: ${usd}`);
  // toFixed(6) rounds the decimal representation, avoiding 0.1*1e6 = 100000.00000000001 artefacts.
  const fixed = Math.abs(usd).toFixed(6);
  const [whole = '0', frac = '0'] = fixed.split('.');
  const micros = Number(whole) * MICROS_PER_USD + Number(frac.padEnd(6, '0').slice(0, 6));
  return usd < 0 ? -micros : micros;
}

/** Micros as a USD number for JSON output (exact to 6 decimals). */
export function microsToUsd(micros: Micros): number {
  return Number((micros / MICROS_PER_USD).toFixed(6));
}

/** Parses a Rates number (e.g. 2.5) into rate millionths; rejects non-positive values. */
export function ratesFromNumber(rates: number): RateMicros {
  if (!Number.isFinite(rates) || rates <= 0 || rates > 1e6)
    throw new RangeError(`rates out of range: ${rates}`);
  return Math.round(rates * RATE_ONE);
}

export function ratesToNumber(rates: RateMicros): number {
  return rates / RATE_ONE;
}

/**
 * Account rates scaled to `percent` of the list prices (Batch API work is billed at the price
 * table's `batch_percent`), rounded up so a discount never undercharges by a rounding step.
 */
export function ratesAtPercent(rates: RateMicros, percent: number): RateMicros {
  return percent === 100 ? rates : mulDiv(rates, percent, 100, 'ceil');
}

/** round(a * b / c) with BigInt intermediates; `mode` picks the rounding direction. */
export function mulDiv(a: number, b: number, c: number, mode: 'floor' | 'ceil' | 'round' = 'round'): number {
  if (c === 0) throw new RangeError('division by zero');
  const num = BigInt(a) * BigInt(b);
  const den = BigInt(c);
  const neg = num < 0n !== den < 0n;
  const an = num < 0n ? -num : num;
  const ad = den < 0n ? -den : den;
  let q = an / ad;
  const r = an % ad;
  if (r !== 0n) {
    const up = mode === 'round' ? r * 2n >= ad : mode === 'ceil' ? !neg : neg;
    if (up) q += 1n;
  }
  return Number(neg ? -q : q);
}

/**
 * Converts an amount expressed in one account's book units to another's: the same real value is
 * `amount / fromRates`, so `amount × toRates / fromRates`. Rounded half up.
 */
export function convertRates(amount: Micros, fromRates: RateMicros, toRates: RateMicros): Micros {
  if (fromRates === toRates) return amount;
  return mulDiv(amount, toRates, fromRates, 'round');
}

/**
 * Cost of metered usage: Σ units × unit price (micros per 1M units) × rates, rounded up once to the
 * micro-dollar so that no request is ever charged less than it cost.
 *
 * Every request computes this twice (reservation and settlement), so it runs on plain integers
 * while every intermediate value is a safe integer (always, for ordinary token counts and
 * prices), and falls back to BigInt otherwise. Both paths give the exact same result.
 */
export function usageCost(
  lines: ReadonlyArray<{ units: number; microsPerMillion: number }>,
  rates: RateMicros,
): Micros {
  let total = 0;
  for (const line of lines) {
    if (line.units <= 0) continue;
    const product = Math.round(line.units) * Math.round(line.microsPerMillion);
    total += product;
    if (!Number.isSafeInteger(product) || !Number.isSafeInteger(total)) return usageCostBig(lines, rates);
  }
  if (total === 0) return 0;
  const num = total * rates;
  if (!Number.isSafeInteger(num)) return usageCostBig(lines, rates);
  // Exact: num < 2^53 makes the quotient < 9008, where doubles are spaced < 1.9e-12 apart, so the
  // rounding error (< 1e-12) cannot carry a quotient across an integer (a non-integer one is at
  // least 1/COST_DEN = 1e-12 away from it).
  return Math.ceil(num / COST_DEN);
}

/** 1M units × RATE_ONE: the divisor that turns Σ units × price × rates into micros. */
const COST_DEN = 1_000_000 * RATE_ONE;

/** `usageCost` in BigInt, for quantities too large for exact Number arithmetic. Exported for tests. */
export function usageCostBig(
  lines: ReadonlyArray<{ units: number; microsPerMillion: number }>,
  rates: RateMicros,
): Micros {
  let total = 0n;
  for (const line of lines) {
    if (line.units <= 0) continue;
    total += BigInt(Math.round(line.units)) * BigInt(Math.round(line.microsPerMillion));
  }
  if (total === 0n) return 0;
  const den = 1_000_000n * BigInt(RATE_ONE);
  const num = total * BigInt(rates);
  return Number((num + den - 1n) / den);
}
