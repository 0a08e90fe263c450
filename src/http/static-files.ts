/**
 * Static file serving for the bundled pages (`pages/billing`, `pages/user`, `pages/docs`).
 *
 * `createStaticFiles({ root, overrides })` returns a handler that maps a URL pathname onto a file below
 * `root` and answers GET/HEAD for it. The rules, in order:
 *
 *  - Other methods are not ours: `handle` resolves `false` and the caller answers.
 *  - The pathname is percent-decoded once; malformed escapes, NUL bytes and backslashes (raw or encoded)
 *    answer 400. `.` / `..` segments (also when encoded: `%2e%2e`, `..%2f`), empty segments and dot-files
 *    answer 404 without touching the file system. The resolved path (and its real path, so symlinks cannot
 *    escape) must stay inside `root`.
 *  - `overrides` map exact decoded pathnames (e.g. `/billing/config.js`) to in-memory bodies; they win over
 *    files on disk.
 *  - A directory without trailing slash answers 301 to the slash form (query string kept); with the slash it
 *    serves `index.html` when present. There are never directory listings.
 *  - A pathname that maps to nothing resolves `false` (not found): the caller answers 404 in its own format.
 *  - Responses carry Content-Type by extension (`charset=utf-8` for text), `Cache-Control: no-cache` for HTML
 *    and `config.js` (so a redeploy or a changed API base is picked up at once) and `public, max-age=3600`
 *    otherwise, an ETag (size-mtime) honoured through If-None-Match (304), and `X-Content-Type-Options:
 *    nosniff`.
 *
 * All file-system access is asynchronous. File contents are cached in memory after the first read and
 * re-validated against size and mtime on every request, so edits on disk show up without a restart.
 */
import { createHash } from 'node:crypto';
import { realpath, readFile, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';

export interface StaticOverride {
  body: string;
  contentType: string;
}

export interface StaticFilesOptions {
  /** Directory served as `/`. */
  root: string;
  /** Exact (decoded) pathnames answered from memory instead of disk. */
  overrides?: Record<string, StaticOverride>;
}

export interface StaticFiles {
  /** Answers the request when it names a servable file; resolves `true` when a response was written. */
  handle(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<boolean>;
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.svg': 'image/svg+xml; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.xml': 'application/xml; charset=utf-8',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
};
const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

const CACHE_REVALIDATE = 'no-cache';
const CACHE_ASSET = 'public, max-age=3600';
/** Files larger than this are read on every request instead of being kept in memory. */
const MAX_CACHED_FILE_BYTES = 2 * 1024 * 1024;
/** Upper bound on cached entries; the oldest entry is evicted first. */
const MAX_CACHE_ENTRIES = 512;

interface CachedFile {
  etag: string;
  body: Buffer;
}

interface Resolved {
  /** Decoded, validated pathname (always starts with `/`). */
  decoded: string;
}

type Decision = { kind: 'ok'; value: Resolved } | { kind: 'reject'; status: 400 | 404 };

export function contentTypeFor(filePath: string): string {
  return CONTENT_TYPES[path.extname(filePath).toLowerCase()] ?? DEFAULT_CONTENT_TYPE;
}

function cacheControlFor(filePath: string): string {
  const base = path.basename(filePath).toLowerCase();
  const ext = path.extname(base);
  return ext === '.html' || ext === '.htm' || base === 'config.js' ? CACHE_REVALIDATE : CACHE_ASSET;
}

/** Decodes and validates a URL pathname without touching the file system. */
function decodePathname(pathname: string): Decision {
  if (!pathname.startsWith('/')) return { kind: 'reject', status: 404 };
  if (pathname.includes('\0') || pathname.includes('\\')) return { kind: 'reject', status: 400 };
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    return { kind: 'reject', status: 400 };
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return { kind: 'reject', status: 400 };
  const segments = decoded.split('/').slice(1);
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i] ?? '';
    // An empty segment is only allowed as the last one (trailing slash).
    if (seg === '' && i !== segments.length - 1) return { kind: 'reject', status: 404 };
    // Covers `.`, `..` and hidden files such as `.env` or `.git`.
    if (seg.startsWith('.')) return { kind: 'reject', status: 404 };
  }
  return { kind: 'ok', value: { decoded } };
}

function isInside(parent: string, child: string): boolean {
  return child === parent || child.startsWith(parent.endsWith(path.sep) ? parent : parent + path.sep);
}

function isNotFoundError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null || !('code' in err)) return false;
  const code = (err as { code?: unknown }).code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENAMETOOLONG' || code === 'EISDIR';
}

function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const weakless = (tag: string): string => (tag.startsWith('W/') ? tag.slice(2) : tag);
  return header
    .split(',')
    .map((t) => t.trim())
    .some((t) => t === '*' || weakless(t) === weakless(etag));
}

function notModifiedSince(req: IncomingMessage, mtimeMs: number): boolean {
  const since = req.headers['if-modified-since'];
  if (since === undefined || req.headers['if-none-match'] !== undefined) return false;
  const sinceMs = Date.parse(since);
  return Number.isFinite(sinceMs) && Math.floor(mtimeMs / 1000) * 1000 <= sinceMs;
}

function sendPlain(res: ServerResponse, status: number, message: string, head: boolean): void {
  const body = `${message}\n`;
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'X-Content-Type-Options': 'nosniff',
    'Cache-Control': 'no-store',
  });
  res.end(head ? undefined : body);
}

function securityHeaders(contentType: string): Record<string, string> {
  const headers: Record<string, string> = { 'X-Content-Type-Options': 'nosniff' };
  if (contentType.startsWith('text/html')) {
    headers['X-Frame-Options'] = 'DENY';
    headers['Referrer-Policy'] = 'no-referrer';
  }
  return headers;
}

function queryOf(req: IncomingMessage): string {
  const url = req.url ?? '';
  const q = url.indexOf('?');
  return q >= 0 ? url.slice(q) : '';
}

export function createStaticFiles(opts: StaticFilesOptions): StaticFiles {
  const root = path.resolve(opts.root);
  const overrides = new Map<string, StaticOverride & { etag: string; bytes: Buffer }>();
  for (const [p, o] of Object.entries(opts.overrides ?? {})) {
    const bytes = Buffer.from(o.body, 'utf8');
    const etag = `"o-${createHash('sha1').update(bytes).digest('hex').slice(0, 20)}"`;
    overrides.set(p, { ...o, etag, bytes });
  }
  const cache = new Map<string, CachedFile>();
  let realRoot: Promise<string> | undefined;

  const getRealRoot = (): Promise<string> => {
    realRoot ??= realpath(root).catch(() => root);
    return realRoot;
  };

  const remember = (file: string, entry: CachedFile): void => {
    if (entry.body.length > MAX_CACHED_FILE_BYTES) return;
    cache.delete(file);
    cache.set(file, entry);
    if (cache.size > MAX_CACHE_ENTRIES) {
      const oldest = cache.keys().next();
      if (oldest.done !== true) cache.delete(oldest.value);
    }
  };

  const send = (
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer,
    meta: { contentType: string; cacheControl: string; etag: string; mtimeMs?: number },
  ): void => {
    const head = req.method === 'HEAD';
    const headers: Record<string, string | number> = {
      ...securityHeaders(meta.contentType),
      'Content-Type': meta.contentType,
      'Cache-Control': meta.cacheControl,
      ETag: meta.etag,
    };
    if (meta.mtimeMs !== undefined) headers['Last-Modified'] = new Date(meta.mtimeMs).toUTCString();
    const fresh =
      etagMatches(req.headers['if-none-match'], meta.etag) ||
      (meta.mtimeMs !== undefined && notModifiedSince(req, meta.mtimeMs));
    if (fresh) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    headers['Content-Length'] = body.length;
    res.writeHead(200, headers);
    res.end(head ? undefined : body);
  };

  const serveFile = async (
    req: IncomingMessage,
    res: ServerResponse,
    file: string,
    size: number,
    mtimeMs: number,
  ): Promise<boolean> => {
    // Symlinks must not lead outside the root either.
    const [real, top] = await Promise.all([realpath(file), getRealRoot()]);
    if (!isInside(top, real)) return false;
    const etag = `"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}"`;
    let entry = cache.get(file);
    if (entry?.etag !== etag) {
      entry = { etag, body: await readFile(file) };
      remember(file, entry);
    }
    send(req, res, entry.body, {
      contentType: contentTypeFor(file),
      cacheControl: cacheControlFor(file),
      etag,
      mtimeMs,
    });
    return true;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, pathname: string): Promise<boolean> => {
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD') return false;
    const head = method === 'HEAD';

    const decision = decodePathname(pathname);
    if (decision.kind === 'reject') {
      sendPlain(res, decision.status, decision.status === 400 ? 'Bad Request' : 'Not Found', head);
      return true;
    }
    const { decoded } = decision.value;

    const override = overrides.get(decoded);
    if (override !== undefined) {
      send(req, res, override.bytes, {
        contentType: override.contentType,
        cacheControl: cacheControlFor(decoded),
        etag: override.etag,
      });
      return true;
    }

    const target = path.resolve(root, '.' + decoded);
    if (!isInside(root, target)) {
      sendPlain(res, 404, 'Not Found', head);
      return true;
    }

    try {
      const st = await stat(target);
      if (st.isDirectory()) {
        if (!decoded.endsWith('/')) {
          // Re-encoded from the validated form: no `//` prefix (rejected above), so it stays on this origin.
          const location = decoded.split('/').map(encodeURIComponent).join('/');
          res.writeHead(301, {
            Location: `${location}/${queryOf(req)}`,
            'Content-Length': 0,
            'Cache-Control': CACHE_ASSET,
            'X-Content-Type-Options': 'nosniff',
          });
          res.end();
          return true;
        }
        const index = path.join(target, 'index.html');
        const indexOverride = overrides.get(`${decoded}index.html`);
        if (indexOverride !== undefined) {
          send(req, res, indexOverride.bytes, {
            contentType: indexOverride.contentType,
            cacheControl: CACHE_REVALIDATE,
            etag: indexOverride.etag,
          });
          return true;
        }
        const ist = await stat(index);
        if (!ist.isFile()) return false;
        return await serveFile(req, res, index, ist.size, ist.mtimeMs);
      }
      if (!st.isFile()) return false;
      if (decoded.endsWith('/')) return false;
      return await serveFile(req, res, target, st.size, st.mtimeMs);
    } catch (err) {
      if (isNotFoundError(err)) return false;
      if (!res.headersSent) sendPlain(res, 500, 'Internal Server Error', head);
      else res.destroy();
      return true;
    }
  };

  return { handle };
}
