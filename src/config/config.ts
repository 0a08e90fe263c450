/**
 * The gateway's configuration: one schema, read from the environment once at start-up, validated
 * (every problem reported together), then frozen. No other module reads `process.env`.
 * Names follow the original ProxyXAI compose file where it had one.
 */
import { usdToMicros, type Micros } from '../billing/money.js';
import { isUtcZone, systemTimeZone } from '../billing/calendar.js';
import { ENABLEABLE_FAMILIES, isEnableableFamily, type EnableableFamily } from '../tenancy/families.js';
import { parsePostgresDsn } from '../store/postgres/dsn.js';
import type { StoreChoice } from '../store/store.js';

export interface RootSeed {
  readonly name: 'root';
  readonly email: string;
  readonly key: string;
}

export interface EmailConfig {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly pass: string;
  readonly sender: string;
  readonly tls: boolean;
}

export interface Config {
  readonly port: number;
  readonly host: string;
  /** Upstream origin, e.g. `https://api.openai.com` (a bare host in the env gets `https://`). */
  readonly upstreamOrigin: string;
  /** Path prefix of the upstream base URL (empty for a bare host), prepended to `/v1/...`. */
  readonly upstreamBasePath: string;
  readonly initUsers: RootSeed | undefined;
  readonly initKeys: readonly string[];
  /** The generated master key's home, and the embedded store's when POSTGRES_DSN is not set. */
  readonly dataDir: string;
  /** SQLite under DATA_DIR, or PostgreSQL when POSTGRES_DSN is set (parsed, password hidden). */
  readonly store: StoreChoice;
  /** 32-byte master key; undefined means "generate or load one from DATA_DIR". */
  readonly masterKeyHex: string | undefined;
  readonly logLevel: string;
  readonly maxAttempts: number;
  /** Overall deadline of one proxied request until upstream response headers arrive (all attempts). */
  readonly upstreamTimeoutMs: number;
  /** Time one attempt may wait for response headers before moving to another key. */
  readonly upstreamAttemptTimeoutMs: number;
  readonly upstreamConnectTimeoutMs: number;
  /** Max silence while streaming a response body before the upstream is considered dead. */
  readonly upstreamIdleTimeoutMs: number;
  /** Upper bound of open upstream connections; 0 = unbounded (each concurrent stream needs one). */
  readonly upstreamConnections: number;
  readonly drainTimeoutMs: number;
  /** A client must send its request headers within this (slow or stalled senders are closed). */
  readonly headersTimeoutMs: number;
  readonly maxBodyBytes: number;
  readonly maxUploadBytes: number;
  readonly keyProbeIntervalMs: number;
  readonly keyCooldownMs: number;
  readonly trustedProxies: readonly string[];
  /** Extra page origins allowed by CORS ("*" allows any origin, never with credentials). */
  readonly corsOrigins: readonly string[];
  readonly timeZone: string;
  readonly statsInterval: number;
  readonly flushIntervalMs: number;
  /**
   * Sub-accounts kept in memory (the root, and accounts with requests in flight or unwritten
   * state, always stay on top of it). The others are read from the store on first use.
   */
  readonly accountCacheSize: number;
  /**
   * Days the per-request rows of the request log (usage_records) are kept; older ones are deleted
   * in small batches off the hot path. 0 keeps them for ever. The daily totals are always kept.
   */
  readonly usageRetentionDays: number;
  /** When set, GET /metrics requires `Authorization: Bearer <token>`. */
  readonly metricsToken: string | undefined;
  /**
   * The settlement journal (DATA_DIR/journal): settlements survive a kill of the process between
   * two flushes. Off only to measure what it costs. Several instances (REDIS_ADDR) run without it.
   */
  readonly journal: boolean;
  /** fdatasync each journal write before the answers it holds back leave (survives power loss). */
  readonly journalFsync: boolean;
  /** V8 old-generation growth between major GCs, in percent; 0 leaves V8's own heuristics. */
  readonly heapGrowthPercent: number;
  readonly userMinBalance: Micros;
  readonly userApiMinBalance: Micros;
  readonly pricesFile: string | undefined;
  readonly defaultModelPrice: string | undefined;
  readonly maxOutputTokensCap: number;
  readonly email: EmailConfig | undefined;
  readonly serviceName: string;
  readonly pagesDir: string | undefined;
  /** What happens to a /v1 path the endpoint table does not classify. */
  readonly unknownEndpoints: 'refuse' | 'forward';
  /** Families refused by default (unmeterable spend) that the operator enables for every account. */
  readonly endpointsEnabled: readonly EnableableFamily[];
  /** How often open batches and background responses are polled upstream until they end. */
  readonly followIntervalMs: number;
  /** A realtime session with no frame in either direction for this long is closed. */
  readonly realtimeIdleTimeoutMs: number;
  /** Longest realtime session; it is closed (and settled) when this is up. */
  readonly realtimeMaxSessionMs: number;
  /** `host:port` of the Redis shared by several instances. */
  readonly redisAddr: string | undefined;
  readonly redisPass: string | undefined;
  /** Redis database index (0–15 on a default server). */
  readonly redisDb: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

/** A configured account key: the original's `sk-Xvs` + 45 word characters (generated ones are alphanumeric). */
export const ACCOUNT_KEY_PATTERN = /^sk-Xvs\w{45}$/;

type Env = Readonly<Record<string, string | undefined>>;

/** Reads and validates the environment; throws one ConfigError listing every problem. */
export function loadConfig(env: Env): Config {
  const problems: string[] = [];
  const str = (name: string, fallback: string): string => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? fallback : v.trim();
  };
  const opt = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = opt(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${name} must be an integer between ${min} and ${max} (got "${raw}")`);
      return fallback;
    }
    return n;
  };
  const num = (name: string, fallback: number, min: number, max: number): number => {
    const raw = opt(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min || n > max) {
      problems.push(`${name} must be a number between ${min} and ${max} (got "${raw}")`);
      return fallback;
    }
    return n;
  };
  const bool = (name: string, fallback: boolean): boolean => {
    const raw = opt(name);
    if (raw === undefined) return fallback;
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    problems.push(`${name} must be true or false (got "${raw}")`);
    return fallback;
  };
  const usd = (name: string, fallback: number): Micros => usdToMicros(num(name, fallback, 0, 1e9));
  const list = (name: string): string[] =>
    (opt(name) ?? '')
      .split(/[,\s]+/)
      .map((s) => s.trim())
      .filter((s) => s !== '');

  const { origin, basePath } = parseUpstream(str('OPENAI_API_BASE', 'api.openai.com'), problems);

  let initUsers: RootSeed | undefined;
  const iu = opt('INIT_USERS');
  if (iu !== undefined) {
    const parts = iu.split(':');
    const [name, email, key] = parts;
    if (parts.length !== 3 || name !== 'root' || !email || !key) {
      problems.push('INIT_USERS must be "root:<email>:<key>"');
    } else if (!ACCOUNT_KEY_PATTERN.test(key)) {
      problems.push('INIT_USERS key must be "sk-Xvs" followed by 45 letters, digits or "_" (51 characters)');
    } else {
      initUsers = { name: 'root', email, key };
    }
  }

  const masterKeyHex = opt('MASTER_KEY');
  if (masterKeyHex !== undefined && !/^[0-9a-fA-F]{64}$/.test(masterKeyHex)) {
    problems.push('MASTER_KEY must be 64 hexadecimal characters (32 bytes)');
  }

  const logLevel = str('LOG_LEVEL', 'info');
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    problems.push(
      `LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got "${logLevel}")`,
    );
  }

  const timeZone = str('TZ', systemTimeZone());
  try {
    if (!isUtcZone(timeZone)) new Intl.DateTimeFormat('en-US', { timeZone });
  } catch {
    problems.push(`TZ is not a known time zone: "${timeZone}"`);
  }

  const corsOrigins = list('CORS_ORIGINS');
  for (const o of corsOrigins) {
    if (o !== '*' && !/^https?:\/\/[^/\s]+$/.test(o))
      problems.push(`CORS_ORIGINS entry is not an origin: "${o}"`);
  }

  const defaultModelPrice = opt('DEFAULT_MODEL_PRICE');
  if (defaultModelPrice !== undefined && !/^\s*\d+(\.\d+)?\s*,\s*\d+(\.\d+)?\s*$/.test(defaultModelPrice)) {
    problems.push('DEFAULT_MODEL_PRICE must be "<input>,<output>" USD per 1M tokens, e.g. "0.15,0.6"');
  }

  let email: EmailConfig | undefined;
  const smtpUser = opt('EMAIL_AUTH');
  const smtpHost = opt('EMAIL_SMTP');
  if (smtpHost !== undefined && (smtpUser !== undefined || opt('EMAIL_SENDER') !== undefined)) {
    email = {
      host: smtpHost,
      port: int('EMAIL_PORT', 465, 1, 65535),
      user: smtpUser ?? '',
      pass: str('EMAIL_PASS', ''),
      sender: str('EMAIL_SENDER', smtpUser ?? ''),
      tls: bool('EMAIL_TLS', true),
    };
  }

  const unknownEndpoints = str('UNKNOWN_ENDPOINTS', 'refuse').toLowerCase();
  if (unknownEndpoints !== 'refuse' && unknownEndpoints !== 'forward') {
    problems.push(`UNKNOWN_ENDPOINTS must be "refuse" or "forward" (got "${unknownEndpoints}")`);
  }
  const endpointsEnabled: EnableableFamily[] = [];
  for (const name of list('ENDPOINTS_ENABLED')) {
    if (isEnableableFamily(name)) endpointsEnabled.push(name);
    else
      problems.push(
        `ENDPOINTS_ENABLED: "${name}" is not a family that can be enabled (${ENABLEABLE_FAMILIES.join(', ')})`,
      );
  }

  const dataDir = str('DATA_DIR', './data');
  let store: StoreChoice = Object.freeze({ kind: 'sqlite', dataDir });
  const dsn = opt('POSTGRES_DSN');
  if (dsn !== undefined) {
    const parsed = parsePostgresDsn(dsn);
    if (parsed.ok) store = Object.freeze({ kind: 'postgres', connection: parsed.connection });
    else problems.push(...parsed.problems);
  }

  const config: Config = {
    port: int('PORT', 3443, 0, 65535),
    host: str('HOST', '0.0.0.0'),
    upstreamOrigin: origin,
    upstreamBasePath: basePath,
    initUsers,
    initKeys: list('INIT_KEYS'),
    dataDir,
    store,
    masterKeyHex: masterKeyHex?.toLowerCase(),
    logLevel,
    maxAttempts: int('MAX_ATTEMPTS', 3, 1, 10),
    upstreamTimeoutMs: int('UPSTREAM_TIMEOUT_MS', 600_000, 100, 3_600_000),
    upstreamAttemptTimeoutMs: int('UPSTREAM_ATTEMPT_TIMEOUT_MS', 300_000, 50, 3_600_000),
    upstreamConnectTimeoutMs: int('UPSTREAM_CONNECT_TIMEOUT_MS', 10_000, 50, 120_000),
    upstreamIdleTimeoutMs: int('UPSTREAM_IDLE_TIMEOUT_MS', 300_000, 100, 3_600_000),
    upstreamConnections: int('UPSTREAM_CONNECTIONS', 0, 0, 1_000_000),
    drainTimeoutMs: int('DRAIN_TIMEOUT_MS', 30_000, 0, 3_600_000),
    headersTimeoutMs: int('HEADERS_TIMEOUT_MS', 60_000, 1_000, 600_000),
    maxBodyBytes: Math.round(num('MAX_BODY_MB', 32, 0.001, 1024) * 1024 * 1024),
    maxUploadBytes: Math.round(num('MAX_UPLOAD_MB', 100, 0.001, 4096) * 1024 * 1024),
    keyProbeIntervalMs: int('KEY_PROBE_INTERVAL_MS', 3_600_000, 1_000, 86_400_000 * 7),
    keyCooldownMs: int('KEY_COOLDOWN_MS', 20_000, 100, 3_600_000),
    trustedProxies: list('TRUSTED_PROXIES'),
    corsOrigins,
    timeZone,
    statsInterval: int('STATS_INTERVAL', 100, 1, 1_000_000),
    flushIntervalMs: int('FLUSH_INTERVAL_MS', 1_000, 10, 60_000),
    accountCacheSize: int('ACCOUNT_CACHE_SIZE', 20_000, 10, 10_000_000),
    usageRetentionDays: int('USAGE_RETENTION_DAYS', 90, 0, 100_000),
    metricsToken: opt('METRICS_TOKEN'),
    journal: bool('JOURNAL', true),
    journalFsync: bool('JOURNAL_FSYNC', false),
    heapGrowthPercent: int('HEAP_GROWTH_PERCENT', 50, 0, 1_000),
    userMinBalance: usd('USER_MIN_BALANCE', 2),
    userApiMinBalance: usd('USER_API_MIN_BALANCE', 20),
    pricesFile: opt('PRICES_FILE'),
    defaultModelPrice,
    maxOutputTokensCap: int('MAX_OUTPUT_TOKENS_CAP', 16_384, 1, 10_000_000),
    email,
    serviceName: str('XAI_SERVICE', 'proxyxai.com'),
    pagesDir: opt('PAGES_DIR'),
    unknownEndpoints: unknownEndpoints === 'forward' ? 'forward' : 'refuse',
    endpointsEnabled,
    followIntervalMs: int('FOLLOW_INTERVAL_MS', 15_000, 10, 3_600_000),
    realtimeIdleTimeoutMs: int('REALTIME_IDLE_TIMEOUT_MS', 300_000, 100, 86_400_000),
    realtimeMaxSessionMs: int('REALTIME_MAX_SESSION_MS', 3_600_000, 100, 86_400_000),
    redisAddr: opt('REDIS_ADDR'),
    redisPass: opt('REDIS_PASS'),
    redisDb: int('REDIS_DB', 0, 0, 1_000_000),
  };
  if (config.redisAddr !== undefined) {
    if (!/^[^\s:]+:\d{1,5}$/.test(config.redisAddr) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(config.redisAddr))
      problems.push(`REDIS_ADDR must be "host:port" (got "${config.redisAddr}")`);
    // Several instances share one PostgreSQL; Redis alone shares nothing an embedded file holds.
    if (config.store.kind !== 'postgres')
      problems.push(
        'REDIS_ADDR is for several instances, which share one PostgreSQL: set POSTGRES_DSN as well',
      );
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}

/** Accepts `api.openai.com`, `https://api.openai.com`, `http://127.0.0.1:8080/prefix`. */
function parseUpstream(raw: string, problems: string[]): { origin: string; basePath: string } {
  const withScheme = /^https?:\/\//i.test(raw) ? raw : `https://${raw}`;
  try {
    const url = new URL(withScheme);
    if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
      problems.push('OPENAI_API_BASE must not contain credentials, a query or a fragment');
    }
    let basePath = url.pathname.replace(/\/+$/, '');
    // A base given as ".../v1" would double the prefix: requests already carry /v1.
    if (basePath.endsWith('/v1')) basePath = basePath.slice(0, -3);
    return { origin: url.origin, basePath };
  } catch {
    problems.push(`OPENAI_API_BASE is not a host or URL: "${raw}"`);
    return { origin: 'https://api.openai.com', basePath: '' };
  }
}
