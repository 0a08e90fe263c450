/**
 * Readers for the deployment files, shared by the tests of test/deploy: the Dockerfile (stages and
 * instructions), docker-compose.yml (parsed by a YAML parser, then interpolated as docker compose
 * does), .env files, .dockerignore, the README's "Deploy" section, and the names of the
 * environment variables the configuration loader knows (read from src/config/config.ts itself).
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parse as parseYaml } from 'yaml';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));

export function readRepoFile(path: string): string {
  return readFileSync(`${REPO}${path}`, 'utf8');
}

// ---------------------------------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------------------------------

export interface Instruction {
  /** Upper-case keyword: FROM, RUN, COPY, ... */
  readonly keyword: string;
  /** The rest of the instruction, continuation lines joined with a space. */
  readonly args: string;
  /** `--name=value` flags at the start of args (COPY --from, HEALTHCHECK --interval, ...). */
  readonly flags: Readonly<Record<string, string>>;
  /** args without the flags. */
  readonly rest: string;
}

export interface Stage {
  readonly name: string;
  /** The FROM image, build arguments (ARG before the first FROM) substituted. */
  readonly from: string;
  readonly instructions: readonly Instruction[];
}

export interface Dockerfile {
  /** ARG defaults declared before the first FROM. */
  readonly args: Readonly<Record<string, string>>;
  readonly stages: readonly Stage[];
}

export function parseDockerfile(text: string): Dockerfile {
  // Logical lines: comments dropped, a trailing backslash continues the line.
  const lines: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw)) continue;
    if (raw.endsWith('\\')) {
      current += `${raw.slice(0, -1).trim()} `;
      continue;
    }
    current += raw.trim();
    if (current.trim() !== '') lines.push(current.trim());
    current = '';
  }
  if (current.trim() !== '') lines.push(current.trim());

  const args: Record<string, string> = {};
  const stages: { name: string; from: string; instructions: Instruction[] }[] = [];
  for (const line of lines) {
    const match = /^([A-Za-z]+)\s*(.*)$/.exec(line);
    if (match === null) throw new Error(`Dockerfile: cannot read "${line}"`);
    const keyword = match[1]!.toUpperCase();
    const argText = match[2]!.trim();
    const flags: Record<string, string> = {};
    let rest = argText;
    for (;;) {
      const flag = /^--([a-z-]+)(?:=(\S*))?\s*/.exec(rest);
      if (flag === null) break;
      flags[flag[1]!] = flag[2] ?? 'true';
      rest = rest.slice(flag[0].length);
    }
    const instruction: Instruction = { keyword, args: argText, flags, rest };
    if (keyword === 'FROM') {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      if (from === null) throw new Error(`Dockerfile: cannot read "${line}"`);
      const image = from[1]!.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (_m, n: string) => args[n] ?? '');
      stages.push({ name: from[2] ?? String(stages.length), from: image, instructions: [] });
    } else if (stages.length === 0) {
      if (keyword !== 'ARG') throw new Error(`Dockerfile: ${keyword} before the first FROM`);
      const [name, value] = splitOnce(rest, '=');
      args[name] = value ?? '';
    } else {
      stages[stages.length - 1]!.instructions.push(instruction);
    }
  }
  return { args, stages };
}

function splitOnce(text: string, separator: string): [string, string | undefined] {
  const at = text.indexOf(separator);
  return at < 0 ? [text, undefined] : [text.slice(0, at), text.slice(at + separator.length)];
}

/** The JSON array of an exec-form instruction (CMD, ENTRYPOINT, HEALTHCHECK ... CMD), or undefined. */
export function execForm(text: string): string[] | undefined {
  if (!text.trim().startsWith('[')) return undefined;
  const value: unknown = JSON.parse(text);
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) return undefined;
  return value as string[];
}

/** ENV of a stage: `KEY=value` pairs (quotes allowed), several per instruction. */
export function stageEnv(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const i of stage.instructions.filter((x) => x.keyword === 'ENV')) {
    for (const m of i.rest.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|'[^']*'|\S*)/g)) {
      const raw = m[2]!;
      env[m[1]!] = /^["']/.test(raw) ? raw.slice(1, -1) : raw;
    }
  }
  return env;
}

// ---------------------------------------------------------------------------------------------------
// Compose file and .env
// ---------------------------------------------------------------------------------------------------

export type Yaml = null | boolean | number | string | Yaml[] | { [key: string]: Yaml };

export function readCompose(): Record<string, Yaml> {
  const doc = parseYaml(readRepoFile('docker-compose.yml')) as unknown;
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new Error('compose: not a map');
  return doc as Record<string, Yaml>;
}

export class MissingVariable extends Error {
  constructor(
    readonly variable: string,
    readonly hint: string,
  ) {
    super(`required variable ${variable} is missing a value: ${hint}`);
  }
}

/**
 * Compose's interpolation of one string: `$$` is a dollar sign; `${VAR}`, `$VAR`, `${VAR:-default}`
 * (unset or empty), `${VAR-default}` (unset), `${VAR:?message}` and `${VAR?message}` (refuse),
 * `${VAR:+alt}` and `${VAR+alt}`. `used` collects every variable named.
 */
export function interpolate(
  text: string,
  env: Readonly<Record<string, string | undefined>>,
  used?: Set<string>,
): string {
  const pattern =
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g;
  return text.replace(
    pattern,
    (whole, braced: string | undefined, op: string | undefined, arg: string | undefined, bare?: string) => {
      if (whole === '$$') return '$';
      const name = braced ?? bare ?? '';
      used?.add(name);
      const value = env[name];
      const unset = value === undefined;
      const empty = unset || value === '';
      const word = arg ?? '';
      switch (op) {
        case ':-':
          return empty ? interpolate(word, env, used) : value;
        case '-':
          return unset ? interpolate(word, env, used) : value;
        case ':?':
          if (empty) throw new MissingVariable(name, word);
          return value;
        case '?':
          if (unset) throw new MissingVariable(name, word);
          return value;
        case ':+':
          return empty ? '' : interpolate(word, env, used);
        case '+':
          return unset ? '' : interpolate(word, env, used);
        default:
          return value ?? '';
      }
    },
  );
}

/** The whole document interpolated (strings only; keys are left as they are). */
export function interpolateDeep<T extends Yaml>(
  value: T,
  env: Readonly<Record<string, string | undefined>>,
  used?: Set<string>,
): T {
  if (typeof value === 'string') return interpolate(value, env, used) as T;
  if (Array.isArray(value)) return value.map((v) => interpolateDeep(v, env, used)) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolateDeep(v, env, used)])) as T;
  }
  return value;
}

/** A service's `environment`, map or list form, values as strings. */
export function serviceEnvironment(service: Yaml): Record<string, string> {
  const env = asMap(service)['environment'];
  if (env === undefined || env === null) return {};
  if (Array.isArray(env)) {
    return Object.fromEntries(
      env.map((entry) => {
        const [k, v] = splitOnce(String(entry), '=');
        return [k, v ?? ''];
      }),
    );
  }
  return Object.fromEntries(Object.entries(asMap(env)).map(([k, v]) => [k, v === null ? '' : String(v)]));
}

export function asMap(value: Yaml | undefined): Record<string, Yaml> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`expected a map, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** A .env file as docker compose reads it: KEY=value lines; # comments; optional quotes. */
export function parseDotenv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (m === null || line.trim().startsWith('#')) continue;
    let value = m[2]!;
    if (/^'.*'$/.test(value) || /^".*"$/.test(value)) value = value.slice(1, -1);
    else value = value.replace(/\s+#.*$/, '');
    env[m[1]!] = value;
  }
  return env;
}

/** Names set or mentioned (commented out) in a .env example: `NAME=` or `#NAME=` at a line start. */
export function dotenvNames(text: string): Set<string> {
  return new Set([...text.matchAll(/^#?([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!));
}

/** libpq key=value pairs (values without quotes or spaces, as in the compose file). */
export function parseLibpq(dsn: string): [string, string][] {
  return dsn
    .trim()
    .split(/\s+/)
    .map((pair) => {
      const [k, v] = splitOnce(pair, '=');
      if (v === undefined) throw new Error(`not a key=value pair: ${pair}`);
      return [k, v];
    });
}

// ---------------------------------------------------------------------------------------------------
// The configuration loader's variables
// ---------------------------------------------------------------------------------------------------

/**
 * Every environment variable src/config/config.ts reads: the string literal a helper of
 * loadConfig (`str('PORT', …)`, `int(…)`, `opt(…)`, …) or `env['…']` is given. Read from the
 * syntax tree of the file, so a new setting is known here without a list to maintain.
 */
export function loaderVariables(): Set<string> {
  const source = ts.createSourceFile(
    'config.ts',
    readRepoFile('src/config/config.ts'),
    ts.ScriptTarget.ES2022,
    true,
  );
  const names = new Set<string>();
  const envName = (node: ts.Node | undefined): string | undefined =>
    node !== undefined && ts.isStringLiteral(node) && /^[A-Z][A-Z0-9_]*$/.test(node.text)
      ? node.text
      : undefined;
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node) && ts.isIdentifier(node.expression)) {
      const name = envName(node.arguments[0]);
      if (name !== undefined) names.add(name);
    }
    if (
      ts.isElementAccessExpression(node) &&
      ts.isIdentifier(node.expression) &&
      node.expression.text === 'env'
    ) {
      const name = envName(node.argumentExpression);
      if (name !== undefined) names.add(name);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return names;
}

// ---------------------------------------------------------------------------------------------------
// .dockerignore
// ---------------------------------------------------------------------------------------------------

/**
 * Docker's rule: patterns are matched in order against the path and each of its parent
 * directories; the last pattern that matches decides (`!` re-includes). `*` and `?` stay inside
 * one path segment, `**` crosses segments.
 */
export function dockerignoreFilter(text: string): (path: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const include = l.startsWith('!');
      const pattern = (include ? l.slice(1) : l).replace(/^\/+|\/+$/g, '');
      return { include, regex: globRegex(pattern) };
    });
  return (path: string) => {
    const parts = path.split('/');
    const prefixes = parts.map((_p, i) => parts.slice(0, i + 1).join('/'));
    let excluded = false;
    for (const rule of rules) {
      if (prefixes.some((p) => rule.regex.test(p))) excluded = !rule.include;
    }
    return !excluded;
  };
}

function globRegex(pattern: string): RegExp {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*' && pattern[i + 1] === '*') {
      // `**/` matches zero or more directories.
      if (pattern[i + 2] === '/') {
        out += '(?:.*/)?';
        i += 2;
      } else {
        out += '.*';
        i += 1;
      }
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else out += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}

/**
 * The checkout's files (tracked and untracked, not git-ignored), relative to the repository. A copy
 * without `.git` (CI's run on another Node line copies the checkout's files only) is walked
 * instead, leaving out what `.gitignore` names.
 */
export function checkoutFiles(): string[] {
  if (!existsSync(`${REPO}.git`)) return walkCheckout();
  const out = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: REPO,
    encoding: 'utf8',
  });
  return [...new Set(out.split('\0'))].filter((f) => f !== '' && existsSync(`${REPO}${f}`));
}

function walkCheckout(): string[] {
  const ignored = readRepoFile('.gitignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => globRegex(l.replace(/\/$/, '')));
  const skip = (rel: string, name: string): boolean => ignored.some((re) => re.test(rel) || re.test(name));
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(`${REPO}${dir}`, { withFileTypes: true })) {
      const rel = `${dir}${entry.name}`;
      if (skip(rel, entry.name)) continue;
      if (entry.isDirectory()) walk(`${rel}/`);
      else if (entry.isFile()) out.push(rel);
    }
  };
  walk('');
  return out.sort();
}

// ---------------------------------------------------------------------------------------------------
// README
// ---------------------------------------------------------------------------------------------------

/** The README's "## Deploy" section, up to the next second-level heading. */
export function readmeDeploySection(): string {
  const readme = readRepoFile('README.md');
  const start = readme.search(/^## Deploy\s*$/m);
  if (start < 0) throw new Error('README.md has no "## Deploy" section');
  const next = readme.slice(start + 1).search(/^## /m);
  return next < 0 ? readme.slice(start) : readme.slice(start, start + 1 + next);
}

/** Fenced code blocks of a Markdown text, with their language. */
export function codeBlocks(markdown: string): { lang: string; code: string }[] {
  return [...markdown.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({ lang: m[1]!, code: m[2]! }));
}

// ---------------------------------------------------------------------------------------------------
// nginx configuration
// ---------------------------------------------------------------------------------------------------

export interface NginxDirective {
  name: string;
  args: string[];
  /** The `{ … }` block, for block directives (http, server, location, upstream, map, …). */
  block?: NginxDirective[];
}

/** nginx's syntax: words and quoted strings, `;` ends a directive, `{ … }` a block; `#` comments. */
export function parseNginx(text: string): NginxDirective[] {
  const tokens: string[] = [];
  const re = /#[^\n]*|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[{};]|[^\s{};"'#]+(?:#[^\s{};]*)*/g;
  for (const m of text.matchAll(re)) if (!m[0].startsWith('#')) tokens.push(m[0]);
  let at = 0;
  const block = (nested: boolean): NginxDirective[] => {
    const out: NginxDirective[] = [];
    let words: string[] = [];
    while (at < tokens.length) {
      const t = tokens[at++]!;
      if (t === ';') {
        if (words.length > 0) out.push({ name: words[0]!, args: words.slice(1) });
        words = [];
      } else if (t === '{') {
        out.push({ name: words[0]!, args: words.slice(1), block: block(true) });
        words = [];
      } else if (t === '}') {
        if (!nested || words.length > 0) throw new Error(`nginx: unexpected } after ${words.join(' ')}`);
        return out;
      } else {
        words.push(t);
      }
    }
    if (nested || words.length > 0) throw new Error('nginx: unexpected end of file');
    return out;
  };
  return block(false);
}

export function serializeNginx(directives: readonly NginxDirective[], indent = ''): string {
  return directives
    .map((d) =>
      d.block === undefined
        ? `${indent}${[d.name, ...d.args].join(' ')};\n`
        : `${indent}${[d.name, ...d.args].join(' ')} {\n${serializeNginx(d.block, `${indent}    `)}${indent}}\n`,
    )
    .join('');
}

/** Every directive named `name` at any depth, with the chain of blocks it is in. */
export function findNginx(
  directives: readonly NginxDirective[],
  name: string,
  parents: NginxDirective[] = [],
): { directive: NginxDirective; parents: NginxDirective[] }[] {
  const out: { directive: NginxDirective; parents: NginxDirective[] }[] = [];
  for (const d of directives) {
    if (d.name === name) out.push({ directive: d, parents });
    if (d.block !== undefined) out.push(...findNginx(d.block, name, [...parents, d]));
  }
  return out;
}

/** Unquotes an nginx string argument. */
export function nginxString(arg: string): string {
  return /^(['"]).*\1$/s.test(arg) ? arg.slice(1, -1).replace(/\\(.)/g, '$1') : arg;
}

// ---------------------------------------------------------------------------------------------------
// systemd unit
// ---------------------------------------------------------------------------------------------------

/** `[Section]` → key → values (a key may repeat). */
export function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[(.+)\]$/.exec(line);
    if (section !== null) {
      current = new Map();
      sections.set(section[1]!, current);
      continue;
    }
    const [key, value] = splitOnce(line, '=');
    if (current === undefined || value === undefined) throw new Error(`unit: cannot read "${line}"`);
    current.set(key.trim(), [...(current.get(key.trim()) ?? []), value.trim()]);
  }
  return sections;
}

/** A systemd time span (`45s`, `1min 30s`, `90`) in milliseconds. */
export function systemdSpanMs(text: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, sec: 1000, m: 60_000, min: 60_000, h: 3_600_000 };
  let total = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)\s*([a-z]*)/g)) {
    const unit = units[m[2] === '' ? 's' : m[2]!];
    if (unit === undefined) throw new Error(`unknown time unit in "${text}"`);
    total += Number(m[1]) * unit;
  }
  return total;
}

/**
 * What the nginx image does with /etc/nginx/templates/*.template: envsubst of the listed variables
 * only (NGINX_ENVSUBST_FILTER), `${NAME}` and `$NAME`; nginx's own `$host` etc. are left alone.
 */
export function renderNginxTemplate(text: string, vars: Readonly<Record<string, string>>): string {
  return text.replace(
    /\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (whole, a?: string, b?: string) => {
      const name = a ?? b ?? '';
      return Object.hasOwn(vars, name) ? vars[name]! : whole;
    },
  );
}

/**
 * Runs the README's command that creates .env (the "Deploy" block that names .env.example) in
 * `dir`, beside a copy of .env.example, and returns the values it wrote.
 */
export function createDotenvAsReadmeSays(dir: string): Record<string, string> {
  copyFileSync(`${REPO}.env.example`, join(dir, '.env.example'));
  const block = codeBlocks(readmeDeploySection()).find((b) => b.code.includes('.env.example'));
  if (block === undefined) throw new Error('README "Deploy" has no command that creates .env');
  execFileSync('bash', ['-euo', 'pipefail', '-c', block.code], { cwd: dir, stdio: 'pipe' });
  return parseDotenv(readFileSync(join(dir, '.env'), 'utf8'));
}
