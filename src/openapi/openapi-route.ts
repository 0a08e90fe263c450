/**
 * `GET /openapi.json`: the description of the gateway's own routes (openapi-document.ts). No key:
 * it describes routes, not data. The document is frozen, so it is serialised once, on first use,
 * and every answer sends the same bytes.
 */
import type { ServerResponse } from 'node:http';
import { OPENAPI_DOCUMENT } from './openapi-document.js';

export { OPENAPI_PATH } from './openapi-document.js';

let body: Buffer | undefined;

/** Answers GET and HEAD (Node leaves the body out of a HEAD answer by itself). */
export function serveOpenApi(res: ServerResponse): void {
  body ??= Buffer.from(JSON.stringify(OPENAPI_DOCUMENT), 'utf8');
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': body.length,
    // A new release may change it: let caches revalidate rather than keep an old description.
    'cache-control': 'no-cache',
  });
  res.end(body);
}
