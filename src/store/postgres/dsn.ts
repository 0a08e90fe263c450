/**
 * POSTGRES_DSN in the two forms people paste: a URL (`postgres://user:pass@host:5432/db?sslmode=disable`,
 * also `postgresql://`) and libpq's key=value form, which the original's compose file used
 * (`user=postgres password=pass host=db dbname=postgres port=5432 sslmode=disable TimeZone=Asia/Shanghai`;
 * values may be single-quoted, with `\'` and `\\` escapes). Both become one typed, frozen
 * connection. Problems never quote the DSN or a value: it holds the password.
 */

export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

export interface PostgresConnection {
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string;
  /** Not enumerable: JSON, logs and inspection of the config never show it. */
  readonly password: string | undefined;
  /**
   * node-postgres cannot fall back from TLS to plain as libpq does, so `allow` and `prefer`
   * connect without TLS; `require` encrypts without verifying; `verify-ca` checks the chain and
   * `verify-full` the host name too.
   */
  readonly sslMode: SslMode;
  /** CA file for verify-ca / verify-full (libpq's sslrootcert). */
  readonly sslRootCert: string | undefined;
  /** Bound on connecting and logging in (libpq's connect_timeout, in seconds there). */
  readonly connectTimeoutMs: number;
  readonly applicationName: string;
  /**
   * Schemas the gateway's tables live in (a session `search_path`, as pgx and GORM take it from
   * the DSN), for a database shared with other applications; undefined: the server's default.
   */
  readonly searchPath: string | undefined;
  /**
   * Parameters accepted for compatibility and deliberately not applied. `TimeZone`: the gateway
   * stores epoch milliseconds and computes day and month windows itself, in `TZ`, so no query
   * depends on the session's time zone.
   */
  readonly ignored: readonly string[];
}

export type DsnResult = { ok: true; connection: PostgresConnection } | { ok: false; problems: string[] };

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const SSL_MODES: readonly SslMode[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];
/** Every parameter understood, in either form (libpq names; `hostaddr` is taken as the host). */
const KNOWN = [
  'host',
  'hostaddr',
  'port',
  'dbname',
  'user',
  'password',
  'sslmode',
  'sslrootcert',
  'connect_timeout',
  'application_name',
  'search_path',
  'TimeZone',
] as const;
const IGNORED = new Set(['TimeZone']);

/** `user@host:port/database`: where a connection goes, safe to print (no password). */
export function describeConnection(c: PostgresConnection): string {
  const host = c.host.includes(':') ? `[${c.host}]` : c.host;
  const schema = c.searchPath === undefined ? '' : ` (search_path ${c.searchPath})`;
  return `${c.user}@${host}:${c.port}/${c.database}${schema}`;
}

export function parsePostgresDsn(raw: string): DsnResult {
  const text = raw.trim();
  const problems: string[] = [];
  let params: Map<string, string> | undefined;
  if (/^postgres(ql)?:\/\//i.test(text)) params = parseUrl(text, problems);
  else if (text.includes('=')) params = parseKeyValue(text, problems);
  else problems.push('POSTGRES_DSN must be a postgres:// URL or libpq key=value pairs');
  if (params === undefined || problems.length > 0) return { ok: false, problems };
  return build(params, problems);
}

function parseUrl(text: string, problems: string[]): Map<string, string> | undefined {
  let url: URL;
  try {
    // The WHATWG parser keeps a non-special scheme's host as written (IPv6 in brackets).
    url = new URL(text);
  } catch {
    problems.push('POSTGRES_DSN is not a valid URL (expected postgres://user:password@host:port/database)');
    return undefined;
  }
  const params = new Map<string, string>();
  const put = (key: string, encoded: string): void => {
    if (encoded === '') return;
    try {
      params.set(key, decodeURIComponent(encoded));
    } catch {
      problems.push(`POSTGRES_DSN: the ${key} part of the URL has a malformed %-escape`);
    }
  };
  put('user', url.username);
  put('password', url.password);
  put('host', url.hostname.replace(/^\[(.*)\]$/, '$1'));
  put('port', url.port);
  put('dbname', url.pathname.replace(/^\//, ''));
  for (const [key, value] of url.searchParams) {
    if (params.has(key) && (key === 'host' || key === 'port') && value !== params.get(key)) {
      problems.push(`POSTGRES_DSN: ${key} is given twice (in the URL and as a parameter)`);
    }
    params.set(key, value);
  }
  return params;
}

/** libpq's grammar: `key = value` pairs separated by spaces; a value is bare or single-quoted. */
function parseKeyValue(text: string, problems: string[]): Map<string, string> | undefined {
  const params = new Map<string, string>();
  let i = 0;
  const space = (): void => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  let previous: string | undefined;
  for (space(); i < text.length; space()) {
    const start = i;
    while (i < text.length && text[i] !== '=' && !/\s/.test(text[i]!)) i++;
    const key = text.slice(start, i);
    space();
    if (key === '' || text[i] !== '=') {
      // The stray text may be the tail of a password with a space in it: name only where it is.
      const where = previous === undefined ? 'at the start' : `after ${printable(previous)}`;
      problems.push(
        `POSTGRES_DSN: text that is not a key=value pair ${where} (quote values that contain spaces: key='a b')`,
      );
      return undefined;
    }
    previous = key;
    i++;
    space();
    let value = '';
    if (text[i] === "'") {
      i++;
      let closed = false;
      while (i < text.length) {
        const ch = text[i++]!;
        if (ch === "'") {
          closed = true;
          break;
        }
        value += ch === '\\' && i < text.length ? text[i++]! : ch;
      }
      if (!closed) {
        problems.push(`POSTGRES_DSN: the quoted value of ${printable(key)} has no closing quote`);
        return undefined;
      }
    } else {
      while (i < text.length && !/\s/.test(text[i]!)) {
        const ch = text[i++]!;
        value += ch === '\\' && i < text.length ? text[i++]! : ch;
      }
    }
    params.set(key, value);
  }
  return params;
}

function build(params: Map<string, string>, problems: string[]): DsnResult {
  const ignored: string[] = [];
  for (const key of params.keys()) {
    if (!(KNOWN as readonly string[]).includes(key)) {
      problems.push(`POSTGRES_DSN: unknown parameter "${printable(key)}" (known: ${KNOWN.join(', ')})`);
    } else if (IGNORED.has(key)) {
      ignored.push(key);
    }
  }
  const get = (key: (typeof KNOWN)[number]): string | undefined => {
    const v = params.get(key);
    return v === undefined || v === '' ? undefined : v;
  };
  const host = get('host') ?? get('hostaddr') ?? 'localhost';
  if (host.includes(',')) problems.push('POSTGRES_DSN: several hosts are not supported; give one');
  const port = integer(get('port'), 5432, 1, 65_535, 'port', problems);
  const timeoutS = integer(
    get('connect_timeout'),
    DEFAULT_CONNECT_TIMEOUT_MS / 1000,
    1,
    600,
    'connect_timeout (seconds)',
    problems,
  );
  // Plain identifiers only: the value becomes a `-c search_path=…` startup option.
  const searchPath = get('search_path')?.replace(/\s*,\s*/g, ',');
  if (searchPath !== undefined && !/^[A-Za-z_][A-Za-z0-9_$]*(,[A-Za-z_][A-Za-z0-9_$]*)*$/.test(searchPath)) {
    problems.push('POSTGRES_DSN: search_path must be schema names (letters, digits, _) separated by commas');
  }
  const sslRaw = get('sslmode') ?? 'prefer';
  const sslMode = SSL_MODES.find((m) => m === sslRaw);
  if (sslMode === undefined) problems.push(`POSTGRES_DSN: sslmode must be one of ${SSL_MODES.join(', ')}`);
  if (problems.length > 0 || sslMode === undefined) return { ok: false, problems };
  const user = get('user') ?? 'postgres';
  const connection = {
    host,
    port,
    // libpq's default: the database named after the user.
    database: get('dbname') ?? user,
    user,
    sslMode,
    sslRootCert: get('sslrootcert'),
    connectTimeoutMs: timeoutS * 1000,
    applicationName: get('application_name') ?? 'proxyxai',
    searchPath,
    ignored: Object.freeze(ignored),
  };
  Object.defineProperty(connection, 'password', { value: get('password'), enumerable: false });
  return { ok: true, connection: Object.freeze(connection as PostgresConnection) };
}

function integer(
  raw: string | undefined,
  fallback: number,
  min: number,
  max: number,
  name: string,
  problems: string[],
): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < min || n > max) {
    problems.push(`POSTGRES_DSN: ${name} must be an integer between ${min} and ${max}`);
    return fallback;
  }
  return n;
}

/** A key as typed, for a problem message: short, and only when it looks like a key, never a value. */
function printable(key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]{0,40}$/.test(key) ? key : '(unreadable key)';
}
