// POSTGRES_DSN as users paste it: a URL or libpq's key=value form (the original's compose file),
// parsed into one frozen connection; a malformed DSN is a config problem that never shows the password.
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/config.js';
import {
  describeConnection,
  parsePostgresDsn,
  type PostgresConnection,
} from '../../src/store/postgres/dsn.js';

function parse(dsn: string): PostgresConnection {
  const r = parsePostgresDsn(dsn);
  if (!r.ok) throw new Error(r.problems.join('; '));
  return r.connection;
}

function fields(c: PostgresConnection): Record<string, unknown> {
  return { ...c, password: c.password };
}

function problems(dsn: string): string[] {
  const r = parsePostgresDsn(dsn);
  if (r.ok) throw new Error('expected problems');
  return r.problems;
}

describe('POSTGRES_DSN', () => {
  it('reads the original compose file’s key=value form', () => {
    const c = parse(
      'user=postgres password=pass host=proxyxai-postgres dbname=postgres port=5432 sslmode=disable TimeZone=Asia/Shanghai',
    );
    expect(fields(c)).toEqual({
      host: 'proxyxai-postgres',
      port: 5432,
      database: 'postgres',
      user: 'postgres',
      password: 'pass',
      sslMode: 'disable',
      sslRootCert: undefined,
      connectTimeoutMs: 10_000,
      applicationName: 'proxyxai',
      searchPath: undefined,
      ignored: ['TimeZone'],
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('reads quoted values with escaped quotes and backslashes, and spaces around "="', () => {
    const c = parse(
      String.raw`host = db.internal  password='it\'s a \\secret' dbname='my db' user=app connect_timeout=3`,
    );
    expect([c.host, c.password, c.database, c.user, c.connectTimeoutMs]).toEqual([
      'db.internal',
      "it's a \\secret",
      'my db',
      'app',
      3_000,
    ]);
  });

  it('reads URLs, both schemes, with %-escapes, IPv6 and query parameters', () => {
    const c = parse(
      'postgres://app:p%40ss%3Aword@db.example.com:6543/gateway?sslmode=require&application_name=gw1',
    );
    expect(fields(c)).toMatchObject({
      host: 'db.example.com',
      port: 6543,
      database: 'gateway',
      user: 'app',
      password: 'p@ss:word',
      sslMode: 'require',
      applicationName: 'gw1',
    });
    expect(parse('postgresql://[::1]/x')).toMatchObject({ host: '::1', port: 5432, database: 'x' });
    expect(describeConnection(parse('postgresql://u@[::1]:5433/x'))).toBe('u@[::1]:5433/x');
    expect(parse("host=h search_path='gw, public'")).toMatchObject({ searchPath: 'gw,public' });
    expect(describeConnection(parse('postgres://u@h/d?search_path=gw'))).toBe('u@h:5432/d (search_path gw)');
    // A Unix socket directory as the host parameter.
    expect(parse('postgres:///db?host=/var/run/postgresql&user=me')).toMatchObject({
      host: '/var/run/postgresql',
      database: 'db',
      user: 'me',
    });
  });

  it('fills libpq’s defaults: localhost:5432, user postgres, the database named after the user', () => {
    expect(fields(parse('user=alice'))).toMatchObject({
      host: 'localhost',
      port: 5432,
      user: 'alice',
      database: 'alice',
      password: undefined,
      sslMode: 'prefer',
    });
    expect(parse('postgres://db')).toMatchObject({ user: 'postgres', database: 'postgres' });
  });

  it('never shows the password: not enumerable, not in JSON, not in inspect', () => {
    const c = parse('postgres://u:TopSecret123@h/d');
    expect(c.password).toBe('TopSecret123');
    expect(JSON.stringify(c)).not.toContain('TopSecret123');
    expect(inspect(c, { depth: 5 })).not.toContain('TopSecret123');
    expect(describeConnection(c)).toBe('u@h:5432/d');
  });

  it.each([
    ['host=h password=TopSecret123 port=notaport', /port must be an integer/],
    ['host=h password=TopSecret123 sslmode=sometimes', /sslmode must be one of/],
    ["host=h password='TopSecret123", /has no closing quote/],
    ['host=h password=Top Secret123', /not a key=value pair after password/],
    ['host=h password=TopSecret123 options=x', /unknown parameter "options"/],
    ['host=h password=TopSecret123 search_path=a;drop', /search_path must be schema names/],
    ['host=a,b password=TopSecret123', /several hosts/],
    ['host=h password=TopSecret123 connect_timeout=0', /connect_timeout \(seconds\) must be an integer/],
    ['postgres://u:TopSecret123@h:99999/d', /not a valid URL/],
    ['postgres://u:TopSecret123%ZZ@h/d', /malformed %-escape/],
    ['TopSecret123', /must be a postgres:\/\/ URL or libpq key=value pairs/],
  ])('reports %s as a problem without the password', (dsn, expected) => {
    const list = problems(dsn);
    expect(list.join('\n')).toMatch(expected);
    expect(list.join('\n')).not.toContain('TopSecret123');
    expect(list.join('\n')).not.toContain('Secret123');
  });

  it('is part of the config: PostgreSQL when set, its problems listed with the others', () => {
    const pg = loadConfig({ POSTGRES_DSN: 'postgres://u:pw@h:5433/d' });
    expect(pg.store).toMatchObject({
      kind: 'postgres',
      connection: { host: 'h', port: 5433, database: 'd' },
    });
    expect(JSON.stringify(pg)).not.toContain('pw');
    expect(loadConfig({ DATA_DIR: '/tmp/x' }).store).toEqual({ kind: 'sqlite', dataDir: '/tmp/x' });
    let err: unknown;
    try {
      loadConfig({ POSTGRES_DSN: "password='TopSecret123", PORT: 'x' });
    } catch (e: unknown) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const message = (err as ConfigError).message;
    expect(message).toMatch(/PORT must be an integer/);
    expect(message).toMatch(/POSTGRES_DSN: the quoted value of password has no closing quote/);
    expect(message).not.toContain('TopSecret123');
  });
});
