// The deployment files, read the way Docker, Compose, nginx and systemd read them (no engine runs
// here): the Dockerfile's stages, user, healthcheck, ports, volume and command; the compose file's
// services, conditions, healthchecks, ports, volumes and refusals without secrets; that every
// variable it gives the gateway is one the configuration loader knows, and every variable the
// README's "Deploy" section names is in the compose file or .env.example; the README's command that
// creates .env; the nginx examples and the systemd unit, and that the docs page shows the same
// files. Runs once per run (sqlite project).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Document, isMap, isPair, isScalar, parseDocument } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { ACCOUNT_KEY_PATTERN, loadConfig } from '../../src/config/config.js';
import { parsePostgresDsn } from '../../src/store/postgres/dsn.js';
import { TEST_STORE } from '../support/gateway.js';
import {
  MissingVariable,
  REPO,
  asMap,
  checkoutFiles,
  codeBlocks,
  createDotenvAsReadmeSays,
  dockerignoreFilter,
  dotenvNames,
  execForm,
  findNginx,
  interpolateDeep,
  loaderVariables,
  nginxString,
  parseDockerfile,
  parseDotenv,
  parseNginx,
  parseUnit,
  readCompose,
  readRepoFile,
  readmeDeploySection,
  renderNginxTemplate,
  serviceEnvironment,
  stageEnv,
  systemdSpanMs,
  type NginxDirective,
  type Stage,
  type Yaml,
} from './deploy-files.js';

const SECRETS = ['INIT_USERS', 'MASTER_KEY', 'POSTGRES_PASSWORD', 'REDIS_PASS'] as const;

const dockerfile = parseDockerfile(readRepoFile('Dockerfile'));
const compose = readCompose();
const services = asMap(compose['services']);
const envExample = readRepoFile('.env.example');
const known = loaderVariables();

const temps: string[] = [];
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

/** `npm start` as argv: `node [flags] dist/main.js`, the one start command the others copy. */
function npmStartArgv(): string[] {
  const pkg = JSON.parse(readRepoFile('package.json')) as { scripts: { start: string } };
  const argv = pkg.scripts.start.trim().split(/\s+/);
  expect(argv[0]).toBe('node');
  expect(argv.at(-1)).toBe('dist/main.js');
  return argv;
}

function stage(name: string): Stage {
  const found = dockerfile.stages.find((s) => s.name === name);
  if (found === undefined) throw new Error(`no stage ${name}`);
  return found;
}
const runtime = dockerfile.stages[dockerfile.stages.length - 1]!;
const runs = (s: Stage): string[] => s.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.rest);
const last = (s: Stage, keyword: string): string | undefined =>
  s.instructions.filter((i) => i.keyword === keyword).at(-1)?.rest;

/** Runs the README's command that creates .env, in a fresh folder with .env.example; its values. */
function generateEnv(): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), 'proxyxai-dotenv-'));
  temps.push(dir);
  return createDotenvAsReadmeSays(dir);
}

/** The compose file interpolated with `env` (as `docker compose config` would). */
function interpolated(env: Record<string, string>): Record<string, Yaml> {
  return interpolateDeep(compose, env);
}

describe.runIf(TEST_STORE === 'sqlite')('deployment files', () => {
  describe('Dockerfile', () => {
    it('builds in stages on one current Node LTS slim image that package.json engines admit', () => {
      const names = dockerfile.stages.map((s) => s.name);
      expect(names).toEqual(expect.arrayContaining(['deps', 'build', 'runtime']));
      expect(runtime.name).toBe('runtime');
      const images = new Set(dockerfile.stages.map((s) => s.from));
      expect(images.size).toBe(1);
      const image = [...images][0]!;
      const major = Number(/^node:(\d+)-[a-z]+-slim$/.exec(image)?.[1]);
      // An LTS line is even-numbered; 24 or later (decisions: Node 20 is end-of-life).
      expect(major % 2, image).toBe(0);
      expect(major).toBeGreaterThanOrEqual(24);
      const engines = (JSON.parse(readRepoFile('package.json')) as { engines: { node: string } }).engines
        .node;
      const floor = Number(/>=\s*(\d+)/.exec(engines)?.[1]);
      const ceiling = Number(/<\s*(\d+)/.exec(engines)?.[1] ?? Infinity);
      expect(floor, engines).toBe(20); // the machines' Node 20 stays supported
      expect(major).toBeLessThan(ceiling);
    });

    it('compiles in a build stage with dev dependencies, and installs production dependencies only for the runtime', () => {
      const build = runs(stage('build'));
      expect(build.some((r) => /\bnpm ci\b/.test(r) && !r.includes('--omit=dev'))).toBe(true);
      expect(build.some((r) => r.includes('npm run build'))).toBe(true);
      const deps = runs(stage('deps'));
      expect(deps.some((r) => /\bnpm ci\b.*--omit=dev/.test(r))).toBe(true);
      // The native module is compiled in that stage (npm ci skips scripts: the package's `prepare`
      // needs tsc, a dev dependency).
      expect(deps.some((r) => r.includes('npm rebuild better-sqlite3'))).toBe(true);

      const copies = runtime.instructions.filter((i) => i.keyword === 'COPY');
      const from = (src: string): string | undefined =>
        copies.find((c) => c.rest.split(/\s+/)[0] === src)?.flags['from'];
      expect(from('/app/node_modules')).toBe('deps');
      expect(from('/app/dist')).toBe('build');
      // Nothing of the build stage but dist/, and no package manager run in the runtime stage.
      expect(copies.filter((c) => c.flags['from'] === 'build').map((c) => c.rest.split(/\s+/)[0])).toEqual([
        '/app/dist',
      ]);
      expect(runs(runtime).some((r) => /\bnpm (ci|install)\b/.test(r))).toBe(false);
    });

    it('has in the image what dist/main.js reads beside it: package.json, the price table, the pages', () => {
      const copied = runtime.instructions
        .filter((i) => i.keyword === 'COPY' && i.flags['from'] === undefined)
        .flatMap((i) => i.rest.split(/\s+/).slice(0, -1));
      expect(copied).toEqual(expect.arrayContaining(['package.json', 'config', 'pages']));
      // src/app.ts: PACKAGE_ROOT is dist/.., where config/prices.json and pages/ are found.
      expect(readRepoFile('src/app.ts')).toContain('`${PACKAGE_ROOT}config/prices.json`');
      expect(readRepoFile('src/app.ts')).toContain('`${PACKAGE_ROOT}pages`');
    });

    it('runs as a non-root user, exposes 3443, keeps DATA_DIR on a volume', () => {
      const user = last(runtime, 'USER');
      expect(user).toBeDefined();
      expect(['root', '0', 'root:root', '0:0']).not.toContain(user);
      expect(last(runtime, 'EXPOSE')).toBe('3443');
      const env = stageEnv(runtime);
      expect(env['PORT']).toBe('3443');
      const volume = last(runtime, 'VOLUME')!;
      const volumes = execForm(volume) ?? volume.split(/\s+/);
      expect(volumes).toContain(env['DATA_DIR']);
      // Every ENV of the image is a setting of the gateway.
      for (const name of Object.keys(env)) expect(known, name).toContain(name);
    });

    it('checks /readyz with node (no curl in the slim image) and starts node itself (exec form)', () => {
      const health = runtime.instructions.find((i) => i.keyword === 'HEALTHCHECK')!;
      expect(health).toBeDefined();
      const cmd = /^CMD\s+(.*)$/s.exec(health.rest)?.[1] ?? '';
      const argv = execForm(cmd);
      expect(argv?.[0]).toBe('node');
      expect(argv?.join(' ')).toContain('/readyz');
      expect(health.flags['interval']).toBeDefined();
      expect(health.flags['start-period']).toBeDefined();
      // Signals reach node (PID 1) directly: exec form, no shell, no npm in between.
      // ... with the flags of `npm start` (the benchmark starts the gateway with them too).
      expect(execForm(last(runtime, 'CMD') ?? '')).toEqual(npmStartArgv());
      expect(runtime.instructions.some((i) => i.keyword === 'ENTRYPOINT')).toBe(false);
      const main = (JSON.parse(readRepoFile('package.json')) as { main: string }).main;
      expect(main).toBe('dist/main.js');
    });

    it('.dockerignore keeps node_modules, data, secrets, test artifacts and .git out of the context', () => {
      const keep = dockerignoreFilter(readRepoFile('.dockerignore'));
      for (const path of [
        'node_modules/pg/package.json',
        'src/node_modules/x.js',
        'dist/main.js',
        'data/proxyxai.db',
        'data/master.key',
        '.env',
        '.git/HEAD',
        'test/artifacts/docs-api-phone.png',
        'test/e2e/proxy-core.test.ts',
        'bench/results/x.json',
        'README.md',
      ]) {
        expect(keep(path), path).toBe(false);
      }
      for (const path of [
        'package.json',
        'package-lock.json',
        'tsconfig.json',
        'tsconfig.build.json',
        'src/main.ts',
        'src/store/sqlite/driver.ts',
        'config/prices.json',
        'pages/docs/index.html',
      ]) {
        expect(keep(path), path).toBe(true);
      }
      // Every file a COPY names from the context is there (after .dockerignore).
      const context = checkoutFiles().filter(keep);
      const fromContext = dockerfile.stages.flatMap((s) =>
        s.instructions
          .filter((i) => i.keyword === 'COPY' && i.flags['from'] === undefined)
          .flatMap((i) => i.rest.split(/\s+/).slice(0, -1)),
      );
      for (const src of fromContext) {
        expect(
          context.some((f) => f === src || f.startsWith(`${src}/`)),
          src,
        ).toBe(true);
      }
    });
  });

  describe('docker-compose.yml', () => {
    it('has the gateway, postgres:16, redis:7 and an optional nginx', () => {
      expect(Object.keys(services).sort()).toEqual(['gateway', 'nginx', 'postgres', 'redis']);
      const gateway = asMap(services['gateway']);
      expect(asMap(gateway['build'])['context']).toBe('.');
      expect(asMap(gateway['build'])['dockerfile']).toBe('Dockerfile');
      expect(asMap(services['postgres'])['image']).toBe('postgres:16');
      expect(asMap(services['redis'])['image']).toBe('redis:7');
      expect(asMap(services['nginx'])['profiles']).toEqual(['nginx']);
      for (const name of Object.keys(services)) {
        expect(asMap(services[name])['restart'], name).toBe('unless-stopped');
      }
    });

    it('starts the gateway once PostgreSQL and Redis are healthy, and both have a healthcheck', () => {
      const dependsOn = asMap(asMap(services['gateway'])['depends_on']);
      expect(asMap(dependsOn['postgres'])['condition']).toBe('service_healthy');
      expect(asMap(dependsOn['redis'])['condition']).toBe('service_healthy');
      const pg = asMap(asMap(services['postgres'])['healthcheck']);
      expect(JSON.stringify(pg['test'])).toContain('pg_isready');
      const redis = asMap(asMap(services['redis'])['healthcheck']);
      expect(JSON.stringify(redis['test'])).toMatch(/redis-cli .*ping/);
      for (const h of [pg, redis]) {
        expect(h['interval']).toBeDefined();
        expect(h['retries']).toBeDefined();
      }
      // The gateway's healthcheck is the image's (/readyz), not overridden here.
      expect(asMap(services['gateway'])['healthcheck']).toBeUndefined();
      // nginx waits for the gateway to exist, not to be ready (a stack without keys is not ready).
      const nginxDeps = asMap(asMap(services['nginx'])['depends_on']);
      expect(asMap(nginxDeps['gateway'])['condition']).toBe('service_started');
    });

    it('publishes 3443:3443 by default, and a free loopback port per instance when scaled', () => {
      const secrets = Object.fromEntries(SECRETS.map((s) => [s, 'x']));
      const ports = (env: Record<string, string>): string[] =>
        (asMap(asMap(interpolated(env)['services'])['gateway'])['ports'] as string[]).map(String);
      expect(ports(secrets)).toEqual(['3443:3443']);
      // Short syntax [ip:][host:]container: no host port = each replica gets its own.
      const scaled = ports({ ...secrets, GATEWAY_PUBLISH: '127.0.0.1::3443' });
      expect(scaled).toEqual(['127.0.0.1::3443']);
      expect(scaled[0]!.split(':')[1]).toBe('');
      const nginx = asMap(services['nginx']);
      expect((nginx['ports'] as string[]).map(String).sort()).toEqual(['443:443', '80:80']);
    });

    it('keeps data in named volumes, the gateway on its DATA_DIR', () => {
      const named = Object.keys(asMap(compose['volumes']));
      const mounts = (svc: string): string[] =>
        (asMap(services[svc])['volumes'] as string[] | undefined) ?? [];
      expect(mounts('postgres')).toContain('postgres-data:/var/lib/postgresql/data');
      expect(named).toContain('postgres-data');
      const env = serviceEnvironment(services['gateway']!);
      const dataMount = mounts('gateway').find((m) => m.endsWith(`:${env['DATA_DIR']}`));
      expect(dataMount).toBeDefined();
      expect(named).toContain(dataMount!.split(':')[0]);
      expect(stageEnv(runtime)['DATA_DIR']).toBe(env['DATA_DIR']);
      // Redis persists nothing, and the file says why.
      expect(JSON.stringify(asMap(services['redis'])['command'])).toContain('--appendonly no');
      expect(mounts('redis')).toEqual([]);
      expect(readRepoFile('docker-compose.yml')).toMatch(
        /No AOF[\s\S]*cannot be rebuilt from\s+#?\s*PostgreSQL/,
      );
      // nginx mounts exist in the checkout.
      for (const m of mounts('nginx').filter((v) => v.startsWith('./'))) {
        expect(existsSync(join(REPO, m.split(':')[0]!)), m).toBe(true);
      }
    });

    it('gives the gateway the time to drain on stop', () => {
      const grace = String(asMap(services['gateway'])['stop_grace_period']);
      const drain = Number(serviceEnvironment(services['gateway']!)['DRAIN_TIMEOUT_MS']);
      expect(systemdSpanMs(grace)).toBeGreaterThan(drain);
    });

    it('refuses to start without each secret, and ships none', () => {
      const raw = readRepoFile('docker-compose.yml');
      expect(raw).not.toMatch(/sk-Xvs[A-Za-z0-9]{45}/);
      const all = Object.fromEntries(SECRETS.map((s) => [s, 'set']));
      expect(() => interpolated(all)).not.toThrow();
      for (const secret of SECRETS) {
        expect(raw).toContain(`\${${secret}:?`);
        const without = { ...all, [secret]: '' };
        expect(() => interpolated(without), secret).toThrow(MissingVariable);
        try {
          interpolated(without);
        } catch (err) {
          expect((err as MissingVariable).variable).toBe(secret);
          expect((err as MissingVariable).hint).toMatch(/\.env/);
        }
      }
      // .env.example leaves them empty: a copy that was not filled in is refused too.
      const example = parseDotenv(envExample);
      for (const secret of SECRETS) expect(example[secret], secret).toBe('');
      expect(() => interpolated(example)).toThrow(MissingVariable);
    });

    it('sets only variables the configuration loader knows, each with a comment', () => {
      expect(known.size).toBeGreaterThan(40);
      // The syntax-tree reading finds what the loader really reads (here: with an empty environment).
      const read = new Set<string>();
      loadConfig(
        new Proxy({} as Record<string, string | undefined>, {
          get: (_t, name) => {
            if (typeof name === 'string') read.add(name);
            return undefined;
          },
        }),
      );
      for (const name of read) expect(known, name).toContain(name);

      const env = serviceEnvironment(services['gateway']!);
      const unknown = Object.keys(env).filter((name) => !known.has(name));
      expect(unknown).toEqual([]);
      // The original's names for what it had.
      for (const name of [
        'TZ',
        'PORT',
        'POSTGRES_DSN',
        'REDIS_ADDR',
        'REDIS_PASS',
        'STATS_INTERVAL',
        'INIT_USERS',
        'OPENAI_API_BASE',
        'INIT_KEYS',
        'USER_MIN_BALANCE',
        'USER_API_MIN_BALANCE',
        'XAI_SERVICE',
        'EMAIL_SMTP',
        'EMAIL_PORT',
        'EMAIL_AUTH',
        'EMAIL_PASS',
        'EMAIL_SENDER',
        'EMAIL_TLS',
        'MASTER_KEY',
        'TRUSTED_PROXIES',
      ]) {
        expect(Object.keys(env), name).toContain(name);
      }

      // A comment on each: in the YAML document, before the key.
      const doc: Document = parseDocument(readRepoFile('docker-compose.yml'));
      const node = doc.getIn(['services', 'gateway', 'environment'], true);
      expect(isMap(node)).toBe(true);
      const uncommented: string[] = [];
      if (isMap(node)) {
        node.items.forEach((pair, i) => {
          if (!isPair(pair) || !isScalar(pair.key)) return;
          // The parser gives the first key's comment to the map itself.
          const comment = pair.key.commentBefore ?? (i === 0 ? node.commentBefore : undefined) ?? '';
          if (comment.trim() === '') uncommented.push(String(pair.key.value));
        });
      }
      expect(uncommented).toEqual([]);
    });

    it('uses the original libpq DSN form and the service names, and loads as a valid configuration', () => {
      const env = serviceEnvironment(asMap(interpolated(generateEnv())['services'])['gateway']!);
      const dsn = env['POSTGRES_DSN']!;
      expect(dsn).not.toMatch(/^postgres(ql)?:\/\//);
      const parsed = parsePostgresDsn(dsn);
      expect(parsed.ok, JSON.stringify(parsed)).toBe(true);
      if (parsed.ok) {
        expect(parsed.connection.host).toBe('postgres');
        expect(parsed.connection.port).toBe(5432);
        expect(services).toHaveProperty(parsed.connection.host);
      }
      expect(env['REDIS_ADDR']).toBe('redis:6379');
      const config = loadConfig(env);
      expect(config.store.kind).toBe('postgres');
      expect(config.port).toBe(3443);
      expect(config.redisAddr).toBe('redis:6379');
    });

    it('has every variable it interpolates in .env.example', () => {
      const used = new Set<string>();
      interpolateDeep(compose, Object.fromEntries(SECRETS.map((s) => [s, 'x'])), used);
      const documented = dotenvNames(envExample);
      const missing = [...used].filter((name) => !documented.has(name));
      expect(missing).toEqual([]);
    });
  });

  describe('README "Deploy"', () => {
    const section = readmeDeploySection();

    it('documents only variables that are in the compose file or .env.example', () => {
      const inCompose = new Set<string>();
      for (const svc of Object.values(services)) {
        for (const name of Object.keys(serviceEnvironment(svc))) inCompose.add(name);
      }
      interpolateDeep(compose, Object.fromEntries(SECRETS.map((s) => [s, 'x'])), inCompose);
      const available = new Set([...inCompose, ...dotenvNames(envExample)]);
      // Names with an underscore (INIT_USERS, GATEWAY_PUBLISH, …) and the loader's one-word names.
      const mentioned = new Set(
        [...section.matchAll(/\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b|\b[A-Z]{2,}\b/g)]
          .map((m) => m[0])
          .filter((name) => name.includes('_') || known.has(name)),
      );
      expect(mentioned.size).toBeGreaterThan(15);
      const missing = [...mentioned].filter((name) => !available.has(name));
      expect(missing).toEqual([]);
    });

    it('creates .env with good random values, which the compose file and the loader accept', () => {
      const a = generateEnv();
      const b = generateEnv();
      const users = /^root:([^:]+):(.+)$/.exec(a['INIT_USERS']!);
      expect(users).not.toBeNull();
      expect(users![2]).toMatch(ACCOUNT_KEY_PATTERN);
      expect(a['MASTER_KEY']).toMatch(/^[0-9a-f]{64}$/);
      for (const pass of ['POSTGRES_PASSWORD', 'REDIS_PASS']) expect(a[pass]).toMatch(/^[0-9a-f]{48}$/);
      for (const secret of SECRETS) expect(a[secret], secret).not.toBe(b[secret]);
      const env = serviceEnvironment(asMap(interpolated(a)['services'])['gateway']!);
      expect(() => loadConfig(env)).not.toThrow();
      // Everything else kept from .env.example.
      expect(a['GATEWAY_PUBLISH']).toBe(parseDotenv(envExample)['GATEWAY_PUBLISH']);
    });

    it('walks through up, readyz, TLS with certbot, --scale and systemd', () => {
      for (const text of [
        'docker compose up -d',
        '/readyz',
        'certbot certonly',
        'docker compose up -d --scale gateway=3',
        'deploy/nginx/proxyxai.conf',
        'deploy/systemd/proxyxai.service',
        '$connection_upgrade', // the Realtime note
        'Multi-level cascading',
      ]) {
        expect(section, text).toContain(text);
      }
    });
  });

  describe('nginx examples', () => {
    const host = parseNginx(readRepoFile('deploy/nginx/proxyxai.conf'));
    const bundled = parseNginx(
      renderNginxTemplate(readRepoFile('deploy/nginx/compose/default.conf.template'), {
        PROXYXAI_DOMAIN: 'example.com',
      }),
    );

    const servers = (conf: NginxDirective[]): Map<string, NginxDirective> => {
      const out = new Map<string, NginxDirective>();
      for (const s of findNginx(conf, 'server').filter((x) => x.directive.block !== undefined)) {
        const block = s.directive.block!;
        const listens = block.filter((d) => d.name === 'listen').map((d) => d.args.join(' '));
        if (!listens.some((l) => l.includes('443'))) continue;
        for (const d of block.filter((x) => x.name === 'server_name')) {
          for (const name of d.args) out.set(name, s.directive);
        }
      }
      return out;
    };
    const directive = (block: NginxDirective[] | undefined, name: string): string[] | undefined =>
      block?.find((d) => d.name === name)?.args;

    it.each([
      ['deploy/nginx/proxyxai.conf', host, '127.0.0.1:3443', '/opt/proxyxai/pages'],
      ['deploy/nginx/compose/default.conf.template', bundled, 'gateway:3443', '/usr/share/proxyxai/pages'],
    ] as const)('%s: the four sites, the api one streaming', (_file, conf, gateway, pages) => {
      const sites = servers(conf);
      expect([...sites.keys()].sort()).toEqual([
        'api.example.com',
        'example.com',
        'sub.example.com',
        'usage.example.com',
      ]);
      for (const server of new Set(sites.values())) {
        expect(directive(server.block, 'ssl_certificate')?.[0]).toMatch(/fullchain\.pem$/);
        expect(directive(server.block, 'ssl_certificate_key')?.[0]).toMatch(/privkey\.pem$/);
      }
      const upstream = findNginx(conf, 'upstream')[0]!.directive;
      expect(upstream.block!.find((d) => d.name === 'server')!.args[0]).toBe(gateway);
      expect(directive(upstream.block, 'keepalive')).toBeDefined();

      const api = sites.get('api.example.com')!.block!;
      const root = api.find((d) => d.name === 'location' && d.args.join(' ') === '/')!.block!;
      expect(directive(root, 'proxy_pass')).toEqual([`http://${upstream.args[0]}`]);
      expect(directive(root, 'proxy_http_version')).toEqual(['1.1']);
      expect(directive(root, 'proxy_buffering')).toEqual(['off']);
      expect(directive(root, 'proxy_request_buffering')).toEqual(['off']);
      expect(systemdSpanMs(directive(root, 'proxy_read_timeout')![0]!)).toBeGreaterThanOrEqual(600_000);
      const headers = new Map(
        root.filter((d) => d.name === 'proxy_set_header').map((d) => [d.args[0]!.toLowerCase(), d.args[1]]),
      );
      expect(headers.get('x-forwarded-for')).toBe('$proxy_add_x_forwarded_for');
      expect(headers.get('upgrade')).toBe('$http_upgrade');
      expect(headers.get('connection')).toBe('$connection_upgrade');
      expect(findNginx(conf, 'map')[0]!.directive.args).toEqual(['$http_upgrade', '$connection_upgrade']);

      for (const [site, folder] of [
        ['usage.example.com', 'billing'],
        ['sub.example.com', 'user'],
        ['example.com', 'docs'],
      ] as const) {
        const block = sites.get(site)!.block!;
        expect(directive(block, 'root')).toEqual([`${pages}/${folder}`]);
        expect(existsSync(join(REPO, 'pages', folder, 'index.html'))).toBe(true);
        const configJs = block.find((d) => d.name === 'location' && d.args.join(' ') === '= /config.js')!;
        const body = nginxString(configJs.block!.find((d) => d.name === 'return')!.args[1]!);
        expect(body).toBe('window.PROXYXAI_CONFIG = { apiBase: "https://api.example.com" };');
      }
    });

    it('tells the operator to set TRUSTED_PROXIES to match', () => {
      for (const file of ['deploy/nginx/proxyxai.conf', 'deploy/nginx/compose/default.conf.template']) {
        expect(readRepoFile(file), file).toContain('TRUSTED_PROXIES=');
      }
    });
  });

  describe('systemd unit', () => {
    const unit = parseUnit(readRepoFile('deploy/systemd/proxyxai.service'));
    const service = unit.get('Service')!;
    const one = (key: string): string | undefined => service.get(key)?.at(-1);

    it('runs node dist/main.js as a dedicated user with an EnvironmentFile, and drains on stop', () => {
      expect(one('User')).toBe('proxyxai');
      expect(one('EnvironmentFile')).toMatch(/^-?\/etc\/proxyxai\/proxyxai\.env$/);
      expect(one('ExecStart')?.split(/\s+/).slice(1)).toEqual(npmStartArgv().slice(1));
      expect(one('ExecStart')).toMatch(/^\/\S*\/node /);
      expect(one('Restart')).toBe('on-failure');
      expect(one('KillSignal')).toBe('SIGTERM');
      const drain = loadConfig({}).drainTimeoutMs;
      expect(systemdSpanMs(one('TimeoutStopSec')!)).toBeGreaterThan(drain);
      expect(unit.get('Install')?.get('WantedBy')).toEqual(['multi-user.target']);
      // Its environment example sets only variables the loader knows.
      const example = parseDotenv(readRepoFile('deploy/systemd/proxyxai.env.example'));
      for (const name of dotenvNames(readRepoFile('deploy/systemd/proxyxai.env.example'))) {
        expect(known, name).toContain(name);
      }
      expect(example['TRUSTED_PROXIES']).toBe('127.0.0.1');
    });

    it('passes systemd-analyze verify (where systemd is installed)', () => {
      const analyze = spawnSync(
        'systemd-analyze',
        ['verify', join(REPO, 'deploy/systemd/proxyxai.service')],
        {
          encoding: 'utf8',
          timeout: 20_000,
        },
      );
      if (analyze.error !== undefined) {
        console.warn('[deploy] systemd-analyze is not installed: the unit was only parsed');
        return;
      }
      const complaints = `${analyze.stdout}${analyze.stderr}`
        .split('\n')
        .filter((l) => l.includes('proxyxai.service'));
      expect(complaints).toEqual([]);
    });
  });

  describe('docs page "Deployment"', () => {
    const page = readRepoFile('pages/docs/deployment.html');
    const unescape = (html: string): string =>
      html
        .replace(/&lt;/g, '<')
        .replace(/&gt;/g, '>')
        .replace(/&quot;/g, '"')
        .replace(/&#39;/g, "'")
        .replace(/&amp;/g, '&');
    const blocks = [...page.matchAll(/<pre><code>([\s\S]*?)<\/code><\/pre>/g)].map((m) => unescape(m[1]!));

    it('shows the nginx example, the systemd unit and the README command that creates .env as they are', () => {
      expect(blocks).toContain(readRepoFile('deploy/nginx/proxyxai.conf').trimEnd());
      expect(blocks).toContain(readRepoFile('deploy/systemd/proxyxai.service').trimEnd());
      const command = codeBlocks(readmeDeploySection()).find((b) => b.code.includes('.env.example'))!;
      expect(blocks).toContain(command.code.trimEnd());
      expect(page).toContain('docker compose up -d --scale gateway=3');
    });
  });

  it('.ci/run installs nginx for the nginx tests', () => {
    expect(readRepoFile('.ci/run')).toMatch(/apt-get install[^\n]*\bchromium\b[^\n]*\bnginx\b/);
  });
});
