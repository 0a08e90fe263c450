/**
 * Label values of the operator metrics, kept to small closed sets: a Prometheus series lives as
 * long as the process, so a label fed from client input (a model name, an account) would grow the
 * scrape and Prometheus' memory without bound. No label ever names an account, and a pool key is
 * shown as its id and last four characters only, as /x-keys shows it.
 */
import { DEFAULT_PRICE_MODEL, type PriceTable } from '../billing/price-table.js';
import type { RequestEnd } from '../billing/meter.js';

/** Models the price table does not list (priced by DEFAULT_MODEL_PRICE, or never priced). */
export const OTHER_MODEL = 'other';
/** Usage rows without a model (requests refused before the body was read, endpoints without one). */
export const NO_MODEL = 'none';
/** An outcome this file does not know yet (a new kind of RequestEnd). */
export const OTHER_OUTCOME = 'other';

/**
 * The `model` label of a usage row: the price-table entry that priced the model (`gpt-4o` for
 * `gpt-4o-2024-08-06` when only `gpt-4o` is listed), so the label values are at most the table's
 * entries, whatever names clients send; everything else is `other`.
 */
export function modelLabel(prices: Pick<PriceTable, 'lookup'>, model: string): string {
  if (model === '') return NO_MODEL;
  const price = prices.lookup(model);
  return price === undefined || price.model === DEFAULT_PRICE_MODEL ? OTHER_MODEL : price.model;
}

type RowOutcome =
  Extract<RequestEnd, { kind: 'relayed' }>['end'] | Exclude<RequestEnd, { kind: 'relayed' }>['outcome'];

// A Record rather than a list: a new outcome in RequestEnd does not compile until it is named here.
const OUTCOMES: Readonly<Record<RowOutcome, true>> = {
  completed: true,
  'client-gone': true,
  'upstream-error': true,
  refused: true,
  failed: true,
  cancelled: true,
  expired: true,
  incomplete: true,
};

/** The `outcome` label of a usage row (its `outcome` column, from a closed set). */
export function outcomeLabel(outcome: string): string {
  return Object.hasOwn(OUTCOMES, outcome) ? outcome : OTHER_OUTCOME;
}

/** The `key` label of a pool key: what /x-keys shows of it, without the `sk-` prefix. */
export function keyLabel(last4: string): string {
  return `...${last4}`;
}
