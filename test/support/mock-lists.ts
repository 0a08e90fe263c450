// OpenAI's cursor paging for the list endpoints of the mock upstream: `limit`, `after`, `before` (where
// OpenAI has it) and `order`, answered as {"object":"list","data":[…],"first_id","last_id","has_more"}.
import { invalidRequest, invalidValueReply, jsonReply, type Json, type Reply } from './mock-http.js';
import { queryOf, type Ctx } from './mock-state.js';

export interface ListRules {
  /** Order when the request gives none: 'desc' (newest first) almost everywhere, 'asc' for chat completions. */
  order?: 'asc' | 'desc';
  /** Whether `order` may be chosen by the request (the batches list, for one, has no `order`). */
  orderable?: boolean;
  /** Whether the endpoint takes a `before` cursor (the Assistants-era lists do). */
  before?: boolean;
  /** Default 20 as on most endpoints; the Files API defaults to 10 000. */
  defaultLimit?: number;
  maxLimit?: number;
}

interface Window {
  data: Json[];
  hasMore: boolean;
}

function idOf(item: Json): string {
  return typeof item.id === 'string' ? item.id : '';
}

function parseLimit(raw: string | null, rules: ListRules): number | Reply {
  const fallback = rules.defaultLimit ?? 20;
  if (raw === null || raw === '') return fallback;
  const max = rules.maxLimit ?? 100;
  const limit = Number(raw);
  if (!Number.isInteger(limit)) {
    return invalidRequest(400, `Invalid 'limit': expected an integer, but got '${raw}' instead.`, 'limit');
  }
  if (limit < 1 || limit > max) {
    return invalidRequest(
      400,
      `Invalid 'limit': integer out of range. Expected a value between 1 and ${max}, but got ${limit} instead.`,
      'limit',
      limit < 1 ? 'integer_below_min_value' : 'integer_above_max_value',
    );
  }
  return limit;
}

/** The slice between the cursors: `after` pages forward, `before` pages back towards the start. */
function cut(ordered: Json[], after: string | null, before: string | null, limit: number): Window {
  let start = 0;
  let end = ordered.length;
  if (after !== null) {
    const at = ordered.findIndex((item) => idOf(item) === after);
    // An id this organisation does not have reads as the end of the list, not as someone else's cursor.
    if (at < 0) return { data: [], hasMore: false };
    start = at + 1;
  }
  if (before !== null) {
    const at = ordered.findIndex((item) => idOf(item) === before);
    if (at < 0) return { data: [], hasMore: false };
    end = at;
  }
  const window = ordered.slice(start, Math.max(start, end));
  if (before !== null && after === null) {
    return { data: window.slice(Math.max(0, window.length - limit)), hasMore: window.length > limit };
  }
  return { data: window.slice(0, limit), hasMore: window.length > limit };
}

/**
 * One page of `items` (given oldest first) as the list endpoint answers it, or a 400 for bad paging
 * parameters. Callers filter `items` first, as OpenAI's server-side filters apply before paging.
 */
export function listPage(ctx: Ctx, items: Iterable<Json>, rules: ListRules = {}): Reply {
  const query = queryOf(ctx);
  const limit = parseLimit(query.get('limit'), rules);
  if (typeof limit !== 'number') return limit;
  const orderable = rules.orderable ?? true;
  const order = (orderable ? query.get('order') : null) ?? rules.order ?? 'desc';
  if (order !== 'asc' && order !== 'desc') return invalidValueReply('order', order, ['asc', 'desc']);
  const all = [...items];
  const ordered = order === 'asc' ? all : all.reverse();
  const before = rules.before === true ? query.get('before') : null;
  const page = cut(ordered, query.get('after'), before, limit);
  return jsonReply(200, listBody(page.data, page.hasMore));
}

export function listBody(data: Json[], hasMore = false): Json {
  const first = data[0];
  const last = data.at(-1);
  return {
    object: 'list',
    data,
    first_id: first === undefined ? null : idOf(first),
    last_id: last === undefined ? null : idOf(last),
    has_more: hasMore,
  };
}
