/**
 * GET /x-logs — the request log: which requests cost what. Any account key may read it: its own
 * requests and its descendants' (root: every account's), never a sibling's or a parent's. A page
 * is JSON with keyset paging headers; `format=csv` (or `Accept: text/csv`) streams every matching
 * row as CSV, a page at a time with back-pressure, so an export of millions of rows runs in
 * constant memory.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Account } from '../accounts/account.js';
import type { UsersDeps } from '../admin/users-deps.js';
import { GatewayError } from '../errors/catalogue.js';
import { sendJson } from '../http/send-json.js';
import { orUnavailable } from '../store/or-unavailable.js';
import { encodeCursor, parseLogQuery, type LogFilter, type LogKey, type LogQuery } from './log-filter.js';
import { countLog, readLogPage, type LogRow } from './log-page.js';
import { CSV_HEADER, csvLine, logJson, type LogView } from './log-row.js';

/** Rows per read while exporting (one page of the walk: bounded memory, bounded loop turns). */
const EXPORT_PAGE = 1000;

export async function handleLogs(
  deps: UsersDeps,
  caller: Account,
  req: IncomingMessage,
  res: ServerResponse,
  url: string,
): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD')
    throw new GatewayError('method_not_allowed', `${req.method ?? ''} is not allowed on /x-logs.`, null, {
      allow: 'GET, HEAD',
    });
  const query = new URL(url, 'http://gateway').searchParams;
  // A failure of the store before the answer starts is a 503 the caller may retry, not a 500; an
  // export that fails part way can only be cut off (its status has left).
  const prepared = await orUnavailable(
    async () => {
      const parsed = await parseLogQuery(query, req.headers.accept, caller, deps.accounts, deps.calendar);
      // This instance's own settlements are written first, so a request just answered is listed.
      await deps.writer.flush();
      return parsed;
    },
    deps.log,
    'GET /x-logs',
  );
  const view: LogView = { caller, names: new Map(), calendar: deps.calendar };
  if (prepared.format === 'csv') return exportCsv(deps, res, prepared, view);
  return orUnavailable(() => sendPage(deps, res, prepared, query, view), deps.log, 'GET /x-logs');
}

async function sendPage(
  deps: UsersDeps,
  res: ServerResponse,
  parsed: LogQuery,
  query: URLSearchParams,
  view: LogView,
): Promise<void> {
  const page = await readLogPage(deps.db, parsed.filter, parsed.size, parsed.after);
  await nameRows(deps, view, page.rows);
  const headers: Record<string, string> = {
    'x-page': String(parsed.page),
    'x-per-page': String(parsed.size),
  };
  if (page.next !== undefined) {
    const cursor = encodeCursor(page.next, parsed.page + 1);
    headers['x-next-cursor'] = cursor;
    query.set('cursor', cursor);
    headers['link'] = `</x-logs?${query.toString()}>; rel="next"`;
  }
  if (parsed.count) {
    const total = await countLog(deps.db, parsed.filter);
    headers['x-total-count'] = String(total);
    headers['x-total-pages'] = String(Math.ceil(total / parsed.size));
  }
  sendJson(
    res,
    200,
    page.rows.map((r) => logJson(r, view)),
    headers,
  );
}

async function exportCsv(deps: UsersDeps, res: ServerResponse, q: LogQuery, view: LogView): Promise<void> {
  res.writeHead(200, {
    'content-type': 'text/csv; charset=utf-8',
    'content-disposition': 'attachment; filename="requests.csv"',
    'cache-control': 'no-store',
  });
  if (!(await write(res, CSV_HEADER))) return;
  const filter: LogFilter = q.filter;
  let after: LogKey | undefined = q.after;
  for (;;) {
    const page = await readLogPage(deps.db, filter, EXPORT_PAGE, after);
    // One page's names at a time: an export across many accounts holds no more.
    view.names.clear();
    await nameRows(deps, view, page.rows);
    let chunk = '';
    for (const row of page.rows) chunk += csvLine(row, view);
    if (chunk !== '' && !(await write(res, chunk))) return;
    if (page.next === undefined) break;
    after = page.next;
    // Give the hot path a turn between pages (an embedded store reads synchronously).
    await new Promise((r) => setImmediate(r));
  }
  res.end();
}

/** Writes and waits for the socket to drain when it is full; false once the client has left. */
function write(res: ServerResponse, text: string): Promise<boolean> {
  if (res.destroyed) return Promise.resolve(false);
  if (res.write(text)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean): void => {
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(ok);
    };
    const onDrain = (): void => done(true);
    const onClose = (): void => done(false);
    res.on('drain', onDrain);
    res.on('close', onClose);
  });
}

/** Reads the names of the rows' accounts the view does not know yet (the store has them all). */
async function nameRows(deps: UsersDeps, view: LogView, rows: readonly LogRow[]): Promise<void> {
  const unknown = rows.map((r) => r.account_id).filter((id) => !view.names.has(id));
  if (unknown.length === 0) return;
  for (const [id, name] of await deps.accounts.names(unknown)) view.names.set(id, name);
}
