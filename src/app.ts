/**
 * The composition root: builds every service from the frozen config, wires them together and
 * returns start/stop handles. Nothing here runs at import time, and tests build the very same app
 * against a temporary data directory and the mock upstream.
 *
 * Longer than our other files on purpose: it reads top to bottom in the order things are built
 * and started (store, sharing, keys, accounts, journal, writer, meter, tenancy, server), which a
 * split would hide; what each piece does lives in its own folder.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pino from 'pino';
import type { Logger } from 'pino';
import { AccountLoader } from './accounts/account-loader.js';
import { AccountRegistry } from './accounts/account-registry.js';
import { Authenticator } from './accounts/authenticate.js';
import type { Account } from './accounts/account.js';
import { loadRoot, newRootAccount } from './accounts/load-accounts.js';
import { RateLimiter } from './accounts/rate-limiter.js';
import type { UsersDeps, Mailer } from './admin/users-deps.js';
import { Calendar } from './billing/calendar.js';
import { Meter } from './billing/meter.js';
import { loadPriceTable, parseDefaultModelPrice } from './billing/price-table.js';
import type { Config } from './config/config.js';
import { ClientAddress } from './http/client-address.js';
import { Cors } from './http/cors.js';
import { createHttpServer } from './http/server.js';
import { createStaticFiles } from './http/static-files.js';
import { createKeyRepository } from './keys/key-repository.js';
import { KeyPool } from './keys/key-pool.js';
import { createSecrets, generateAccountKey, resolveMasterKey, type Secrets } from './keys/secrets.js';
import { registerAccountMetrics } from './observability/account-metrics.js';
import { createLogger } from './observability/logger.js';
import { countUsage, createMetrics, timedSink, type Metrics } from './observability/metrics.js';
import { LocalAccountUnit, type AccountUnit } from './accounts/account-unit.js';
import { redisSettingsFromConfig } from './cluster/cluster.js';
import { SharedAccounts } from './cluster/shared-accounts.js';
import { deadInstances, replayBudgets } from './cluster/dead-instances.js';
import { createFollowClaims } from './cluster/follow-claims.js';
import { RedisObjectDirectory } from './cluster/object-directory.js';
import { startSharing, type Sharing, type SharingHooks } from './cluster/sharing.js';
import { claimSoleInstance, STALE_AFTER_MS, type InstanceHeartbeat } from './store/instances.js';
import type { BatchSink } from './store/batch-sink.js';
import { journalFolder } from './journal/journal-folder.js';
import { replayJournal } from './journal/replay-journal.js';
import { UsageRetention } from './logs/usage-retention.js';
import { replaySharedJournals } from './journal/replay-shared.js';
import { SettlementJournal } from './journal/settlement-journal.js';
import { openStore, type Store } from './store/store.js';
import { StateWriter } from './store/state-writer.js';
import { UpstreamClient } from './upstream/upstream-client.js';
import { createMailer, notifySoftLimit } from './accounts/notifications.js';
import { createRealtimeGateway } from './realtime/create-realtime-gateway.js';
import type { RealtimeGateway } from './realtime/realtime-gateway.js';
import { EndpointGate } from './tenancy/endpoint-gate.js';
import { Follower } from './tenancy/follower.js';
import { ObjectRegistry } from './tenancy/object-registry.js';
import { createObjectRepository } from './tenancy/object-repository.js';
import type { TenancyDeps } from './tenancy/tenancy.js';

export interface AppOptions {
  /** Where log lines go (tests capture them); stdout by default. */
  readonly logDestination?: pino.DestinationStream;
  readonly clock?: () => number;
  /** Overrides the mailer (tests); by default built from EMAIL_* when configured. */
  readonly mailer?: Mailer;
  /** Tests: wraps the store's batch sink (to make its writes fail). */
  readonly batchSink?: (sink: BatchSink) => BatchSink;
  /** Tests: usage and ledger rows that may wait for a failing store (default 100,000). */
  readonly maxBacklog?: number;
}

export interface App {
  readonly config: Config;
  readonly log: Logger;
  readonly server: Server;
  readonly store: Store;
  readonly pool: KeyPool;
  readonly registry: AccountRegistry;
  /** Accounts by id, key, name or e-mail, loaded on first use. */
  readonly accounts: AccountLoader;
  readonly writer: StateWriter;
  /** The settlement journal (several instances: this instance's own folder; JOURNAL=off: replays only). */
  readonly journal: SettlementJournal | undefined;
  readonly secrets: Secrets;
  readonly metrics: Metrics;
  /** WebSocket sessions of `/v1/realtime` (upgrades of `server`). */
  readonly realtime: RealtimeGateway;
  /** Owners of upstream objects, and the work the gateway follows for billing. */
  readonly objects: ObjectRegistry;
  readonly follower: Follower;
  /** Deletes request-log rows older than USAGE_RETENTION_DAYS. */
  readonly retention: UsageRetention;
  /** Set only when this start generated the root key (printed once, never stored in clear). */
  readonly generatedRootKey: string | undefined;
  listen(): Promise<{ port: number; url: string }>;
  /** Graceful stop: refuse new connections, let in-flight requests finish (bounded), flush, close. */
  stop(): Promise<void>;
}

const PACKAGE_ROOT = fileURLToPath(new URL('../', import.meta.url));

export async function buildApp(config: Config, options: AppOptions = {}): Promise<App> {
  const clock = options.clock ?? Date.now;
  const log = createLogger(config.logLevel, options.logDestination);
  const master = resolveMasterKey(config.masterKeyHex, config.dataDir);
  if (master.source.kind === 'file' && master.source.created) {
    log.warn(
      { path: master.source.path },
      'MASTER_KEY is not set: generated one into DATA_DIR (mode 0600). Back it up with the data: without it the stored upstream keys cannot be decrypted.',
    );
  }
  const secrets = createSecrets(master.key);
  const store = await openStore(config.store, log);
  let instance: InstanceHeartbeat | undefined;
  let sharing: Sharing | undefined;
  try {
    const redis = redisSettingsFromConfig(config);
    const { shared, instances } = store;
    if (shared !== undefined && instances !== undefined && redis !== undefined) {
      // Several instances: money in leases, changes announced, liveness over Redis.
      sharing = await startSharing({
        store: { ...store, shared, instances },
        redis,
        calendar: new Calendar(config.timeZone),
        log,
        clock,
      });
    } else if (instances !== undefined) {
      // Without Redis a shared store takes one gateway (balances live in its memory).
      instance = await claimSoleInstance(instances, store.location, log);
    }
    return await composeApp(config, options, { clock, log, secrets, store, instance, sharing });
  } catch (err: unknown) {
    // Failed after the store opened (a wrong MASTER_KEY): leave no instance row to block a retry.
    await instance?.stop().catch(() => undefined);
    await sharing?.stop().catch(() => undefined);
    await store.close().catch(() => undefined);
    throw err;
  }
}

interface Base {
  clock: () => number;
  log: Logger;
  secrets: Secrets;
  store: Store;
  instance: InstanceHeartbeat | undefined;
  sharing: Sharing | undefined;
}

/** Everything above the store, built once the store is open and this instance admitted. */
async function composeApp(config: Config, options: AppOptions, base: Readonly<Base>): Promise<App> {
  const { clock, log, secrets, store, instance, sharing } = base;
  const metrics = createMetrics();
  const calendar = new Calendar(config.timeZone);

  const pool = new KeyPool(
    createKeyRepository(store.db),
    secrets,
    {
      cooldownMs: config.keyCooldownMs,
      ejectAfter: 3,
      ejectBaseMs: 10_000,
      maxEjectMs: 300_000,
      probeIntervalMs: config.keyProbeIntervalMs,
    },
    log,
    clock,
    // Several instances: an admin change or a key's health is announced, in effect everywhere.
    sharing === undefined ? {} : { announce: (id) => sharing.announce({ topic: 'key', id }) },
  );
  await pool.load();
  for (const key of config.initKeys) await pool.add(key);

  // Accounts are read on first use and kept while in use (account-registry.ts): what holds one
  // in memory is read through `held`, which needs the writer and the purse made below.
  let held: (account: Account) => boolean = () => true;
  const registry = new AccountRegistry({ capacity: config.accountCacheSize, held: (a) => held(a) });
  await loadRoot(store.db, registry, calendar.periodOf(clock()));
  // Settlements wait for the writer's next batch in memory; the journal keeps them across a crash
  // meanwhile (replayed below, before the gateway listens). With JOURNAL=off it only replays what
  // a previous run left. Several instances: each journals into a folder of its own id, and the
  // journals of dead instances are written by the living (journal/replay-shared.ts).
  const journalDir = journalFolder(config.dataDir, store);
  const journal = SettlementJournal.open({
    dir: sharing === undefined ? journalDir : join(journalDir, sharing.instanceId),
    fsync: config.journalFsync,
    log,
  });
  const sink = sharing?.sink ?? store.batchSink;
  // The original flushed stats to Redis every STATS_INTERVAL requests and to the database every
  // STATS_INTERVAL × 10; with no Redis tier in between, the database batch takes the larger size.
  const writer = new StateWriter(timedSink(options.batchSink?.(sink) ?? sink, metrics), log, {
    flushIntervalMs: config.flushIntervalMs,
    statsInterval: config.statsInterval * 10,
    accountSnapshots: sharing === undefined,
    journal,
    // Accounts a write released may be evicted now, not only when the next one is loaded.
    afterWrite: () => registry.trim(),
    ...(options.maxBacklog !== undefined && { maxBacklog: options.maxBacklog }),
  });
  // Several instances: accounts change in store transactions, announced to every instance.
  const shared =
    sharing === undefined
      ? undefined
      : new SharedAccounts({
          db: store.db,
          registry,
          writer,
          calendar,
          purse: sharing.purse,
          log,
          clock,
          announce: (notice) => sharing.announce(notice),
          recall: async (accountId) => {
            await sharing.cluster.broadcast.publishAndWait(
              { topic: 'lease-recall', accountId },
              { timeoutMs: 1_000 },
            );
          },
        });
  const purse = sharing?.purse;
  held = (a) => a.reserved > 0 || writer.holds(a.id) || (purse?.holds(a.id) ?? false);
  const accounts = new AccountLoader({
    db: store.db,
    registry,
    writer,
    period: () => calendar.periodOf(clock()),
  });
  const unit: AccountUnit = shared ?? new LocalAccountUnit(registry, accounts, writer, log);
  const hooks: SharingHooks = {
    reloadAccount: (id) => shared?.reload(id) ?? Promise.resolve(),
    reloadAccounts: () => shared?.reloadAll() ?? Promise.resolve(),
    reloadKey: (id) => pool.reloadKey(id),
    reloadKeys: () => pool.reloadKeys(),
    account: (id) => registry.get(id),
    flush: () => writer.flush(),
  };
  sharing?.attach(hooks);
  // Notices that came before the hooks were attached were dropped: read what they announced.
  if (sharing !== undefined) await pool.reloadKeys();
  const generatedRootKey = await ensureRoot(config, registry, unit, secrets, calendar, clock, log);
  // Another instance made the root meanwhile: read it.
  if (registry.root() === undefined) await loadRoot(store.db, registry, calendar.periodOf(clock()));
  writer.start();

  const mailer = options.mailer ?? (config.email === undefined ? undefined : createMailer(config.email));
  const prices = loadPriceTable(config.pricesFile ?? `${PACKAGE_ROOT}config/prices.json`, {
    ...(config.defaultModelPrice !== undefined && {
      defaultPrice: parseDefaultModelPrice(config.defaultModelPrice),
    }),
  });
  const limiter = sharing?.cluster.limiter ?? new RateLimiter();
  metrics.attach({ accounts: registry, writer, keys: pool });
  registerAccountMetrics(metrics.registry, { registry, loader: accounts });
  const meter = new Meter(
    prices,
    calendar,
    limiter,
    countUsage(writer, metrics, prices),
    {
      maxOutputTokensCap: config.maxOutputTokensCap,
      journal: config.journal ? journal : undefined,
      ...(sharing !== undefined && { purse: sharing.purse }),
    },
    (account) => {
      // Several instances may all see the month cross the SoftLimit: one of them sends the mail.
      if (shared === undefined) notifySoftLimit(mailer, account, config.serviceName, log);
      else
        void shared.noticeOnce(account).then((first) => {
          if (first) notifySoftLimit(mailer, account, config.serviceName, log);
        });
    },
    clock,
  );
  const upstream = new UpstreamClient(config.upstreamOrigin, config.upstreamBasePath, {
    connectTimeoutMs: config.upstreamConnectTimeoutMs,
    idleTimeoutMs: config.upstreamIdleTimeoutMs,
    connections: config.upstreamConnections,
  });
  const retry = {
    maxAttempts: config.maxAttempts,
    deadlineMs: config.upstreamTimeoutMs,
    attemptTimeoutMs: config.upstreamAttemptTimeoutMs,
    observe: metrics.observeAttempt,
  };
  // Several instances: objects made elsewhere are known through Redis before their rows are
  // written (kept well past a flush, and found in the store after that).
  const objects = new ObjectRegistry(createObjectRepository(store.db), writer, {
    directory:
      sharing === undefined
        ? undefined
        : new RedisObjectDirectory(sharing.cluster.redis, {
            ttlMs: Math.max(600_000, 60 * config.flushIntervalMs),
            recentMs: Math.max(30_000, 20 * config.flushIntervalMs),
            log,
          }),
  });
  const follower = new Follower({
    claims:
      sharing === undefined
        ? undefined
        : createFollowClaims({
            db: store.db,
            instanceId: sharing.instanceId,
            liveInstances: () => sharing.cluster.heartbeat.liveInstances(),
          }),
    registry: objects,
    accounts,
    meter,
    prices,
    pool,
    upstream,
    retry,
    log,
    intervalMs: config.followIntervalMs,
    clock,
  });
  const replayDead =
    sharing === undefined
      ? undefined
      : (): Promise<number> =>
          replaySharedJournals({
            dir: journalDir,
            self: sharing.instanceId,
            dead: (ids) =>
              deadInstances(store.db, () => sharing.cluster.heartbeat.liveInstances(), ids, STALE_AFTER_MS),
            sinkFor: (id) => sharing.money.deltaSink(id, clock),
            budgets: (instance, accounts) => replayBudgets(store.db, instance, accounts, clock()),
            roots: async () =>
              new Set(
                (await store.db.selectFrom('accounts').select('id').where('is_root', '=', 1).execute()).map(
                  (r) => r.id,
                ),
              ),
            log,
          });
  sharing?.attach({
    ...hooks,
    claimFollowsOf: (id) => follower.claimFrom(id),
    claimAbandonedFollows: () => follower.claimAbandoned(),
    ...(replayDead !== undefined && { replayJournals: replayDead }),
  });
  // Settlements a crash kept from the store are applied before anything else can spend.
  if (replayDead !== undefined) {
    // A fresh folder of its own: nothing to replay there. Dead instances' journals: now, and by
    // the janitor for those that die later or whose heartbeat is not stale yet.
    journal.dropRecovered();
    await replayDead().catch((err: unknown) =>
      log.error({ err }, 'could not write the journals of dead instances yet; the janitor retries'),
    );
  } else {
    await replayJournal({
      journal,
      db: store.db,
      account: (id) => accounts.byId(id),
      meter,
      follows: objects,
      flush: () => writer.flush(),
      log,
    });
  }
  // Open batches and background responses hold their reservations again before traffic starts.
  // (Several instances: those no live instance follows. Redis unreadable now: the janitor
  // takes them over once it answers.)
  if (sharing === undefined) await follower.resume();
  else
    await follower
      .resume()
      .catch((err: unknown) =>
        log.warn({ err }, 'could not take over abandoned follows yet; retrying later'),
      );
  follower.start();
  // After the journal's replay (it looks its request ids up in usage_records).
  const retention = new UsageRetention(store.db, log, config.usageRetentionDays, clock);
  retention.start();
  const tenancy: TenancyDeps = {
    endpoints: new EndpointGate({
      unknownEndpoints: config.unknownEndpoints,
      endpointsEnabled: config.endpointsEnabled,
    }),
    registry: objects,
    follower,
    writer,
    meter,
    batch: { pool, upstream, retry, prices, maxOutputTokensCap: config.maxOutputTokensCap },
    list: { registry: objects, pool, upstream, retry, clock },
    clock,
    onWriteError: (err) => log.error({ err }, 'could not write a followed object yet; the writer retries'),
  };
  const users: UsersDeps = {
    registry,
    accounts,
    writer,
    unit,
    fresh: (accounts) => shared?.fresh(accounts) ?? Promise.resolve(),
    secrets,
    calendar,
    meter,
    limiter,
    db: store.db,
    log,
    mailer,
    config: {
      userMinBalance: config.userMinBalance,
      userApiMinBalance: config.userApiMinBalance,
      serviceName: config.serviceName,
    },
    clock,
  };
  const pagesRoot = config.pagesDir ?? `${PACKAGE_ROOT}pages`;
  const sameOriginConfig = {
    body: 'window.PROXYXAI_CONFIG = { apiBase: "" };\n',
    contentType: 'text/javascript; charset=utf-8',
  };
  const pages = createStaticFiles({
    root: pagesRoot,
    overrides: {
      '/billing/config.js': sameOriginConfig,
      '/user/config.js': sameOriginConfig,
      '/docs/config.js': sameOriginConfig,
    },
  });

  let draining = false;
  let inFlight = 0;
  const idleWaiters: Array<() => void> = [];
  const server = createHttpServer({
    log,
    headersTimeoutMs: config.headersTimeoutMs,
    metrics,
    metricsToken: config.metricsToken,
    auth: new Authenticator(registry, accounts, secrets),
    pool,
    proxy: {
      pool,
      upstream,
      meter,
      metrics,
      retry,
      maxBodyBytes: config.maxBodyBytes,
      maxUploadBytes: config.maxUploadBytes,
      tenancy,
    },
    users,
    cors: new Cors(config.corsOrigins),
    clientAddress: new ClientAddress(config.trustedProxies),
    pages,
    ready: async () => {
      const storeOk = await store.ping();
      const keysOk = pool.usableCount() > 0;
      const checks: Record<string, boolean> = { store: storeOk, upstream_keys: keysOk };
      const reasons: string[] = [];
      if (!storeOk) {
        reasons.push(
          `the database does not answer; ${writer.pending} settlement row(s) wait to be written` +
            (sharing === undefined ? '' : '; accounts are served from the credit this instance leases'),
        );
      } else if (writer.failedFlushes > 0) {
        reasons.push(`the last ${writer.failedFlushes} write(s) to the database failed; retrying`);
        checks['store'] = false;
      }
      if (!keysOk) reasons.push('no upstream key is usable');
      const journalHealth = journal?.health;
      if (journalHealth !== undefined && journalHealth.failures > 0) {
        checks['journal'] = false;
        reasons.push(
          `the settlement journal cannot be written (${journalHealth.error ?? 'error'}); ` +
            'a crash now would lose the settlements not yet in the database',
        );
      }
      if (sharing !== undefined) {
        checks['redis'] = await sharing.cluster.redis.ping().then(
          () => true,
          () => false,
        );
        if (!checks['redis']) reasons.push('Redis does not answer');
        if (sharing.purse.isFenced()) {
          checks['leases'] = false;
          reasons.push('not spending leased credit until this instance is back among the live ones');
        }
      }
      return {
        ok: Object.values(checks).every(Boolean),
        checks,
        reasons,
        ...(sharing !== undefined && { instance: sharing.instanceId }),
      };
    },
    isDraining: () => draining,
  });
  const realtime = createRealtimeGateway(config, {
    log,
    metrics,
    meter,
    prices,
    pool,
    registry,
    accounts,
    secrets,
    isDraining: () => draining,
  });
  server.on('upgrade', (req, socket, head: Buffer) => realtime.handleUpgrade(req, socket, head));
  server.on('request', (_req, res) => {
    inFlight++;
    res.once('close', () => {
      inFlight--;
      if (inFlight === 0) for (const w of idleWaiters.splice(0)) w();
    });
  });

  const counterTimer = setInterval(() => {
    pool.flushCounters().catch((err: unknown) => log.error({ err }, 'could not write upstream key counters'));
    const counts = { active: 0, cooling: 0, parked: 0, disabled: 0 };
    for (const k of pool.list()) counts[k.status]++;
    for (const [status, n] of Object.entries(counts)) metrics.upstreamKeys.set({ status }, n);
  }, 10_000);
  counterTimer.unref();

  return {
    config,
    log,
    server,
    store,
    pool,
    registry,
    accounts,
    writer,
    journal,
    secrets,
    metrics,
    objects,
    follower,
    retention,
    generatedRootKey,
    realtime,
    listen() {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        // A deep accept queue absorbs bursts of new connections (thousands of streams opening at once).
        server.listen(config.port, config.host, 4096, () => {
          server.off('error', reject);
          const { port } = server.address() as AddressInfo;
          const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
          log.info(
            {
              port,
              host: config.host,
              upstream: config.upstreamOrigin + config.upstreamBasePath,
              keys: pool.size,
              accounts: registry.size,
              store: store.location,
            },
            'proxyxai listening',
          );
          resolve({ port, url: `http://${host}:${port}` });
        });
      });
    },
    async stop() {
      draining = true;
      // Realtime sessions are closed at once (1001) and settled before the store closes.
      const realtimeClosed = realtime.closeAll();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (inFlight > 0) {
        await Promise.race([
          new Promise<void>((resolve) => idleWaiters.push(resolve)),
          new Promise<void>((resolve) => setTimeout(resolve, config.drainTimeoutMs).unref()),
        ]);
      }
      server.closeAllConnections();
      await realtimeClosed;
      await closed;
      clearInterval(counterTimer);
      await follower.stop();
      await retention.stop();
      await writer.stop().catch((err: unknown) => log.error({ err }, 'final state flush failed'));
      // Everything settled is in the store: the journal is empty. Otherwise it stays for the next start.
      await journal?.close(writer.pending === 0 && writer.failedFlushes === 0);
      await pool
        .flushCounters()
        .catch((err: unknown) => log.error({ err }, 'final key counter flush failed'));
      await pool.close();
      await upstream.destroy();
      // Every lease goes back once the last settlement is written; then this instance leaves.
      await sharing?.stop();
      await instance?.stop().catch((err: unknown) => log.error({ err }, 'could not remove the instance row'));
      await store.close();
      log.info('proxyxai stopped');
    },
  };
}

/**
 * Creates the root account on first start: from INIT_USERS, or with a generated key that is
 * printed once (only its fingerprint is stored). An INIT_USERS key that differs from the stored
 * root key replaces it, so rotating the key in the compose file works. It runs as a change of the
 * sub-account API, so several instances starting at once on an empty database make one root.
 */
async function ensureRoot(
  config: Config,
  registry: AccountRegistry,
  unit: AccountUnit,
  secrets: Secrets,
  calendar: Calendar,
  clock: () => number,
  log: Logger,
): Promise<string | undefined> {
  const now = clock();
  const seed = config.initUsers;
  const known = registry.root();
  const key = seed?.key ?? generateAccountKey();
  const r = await unit.run(
    { touch: known === undefined ? [] : [known.id], names: ['root'], create: known === undefined },
    (view) => {
      const holder = view.registry.findByName('root');
      const existing = holder === undefined ? undefined : view.account(holder.id);
      if (holder !== undefined && existing === undefined)
        return { ok: true as const, made: 'elsewhere' as const };
      if (existing !== undefined) {
        if (seed === undefined || secrets.equal(existing.keyHash, secrets.hash(seed.key)))
          return { ok: true as const, made: 'none' as const };
        const old = { name: existing.name, email: existing.email, keyHash: existing.keyHash };
        existing.keyHash = secrets.hash(seed.key);
        existing.partialKey = seed.key.slice(-20);
        existing.email = seed.email;
        existing.updatedAt = now;
        view.registry.reindex(existing, old);
        view.writes.markDirty(existing);
        return { ok: true as const, made: 'replaced' as const };
      }
      const root = newRootAccount(
        view.registry.allocateId(),
        seed?.email ?? 'root@localhost',
        secrets.hash(key),
        key.slice(-20),
        now,
        calendar.periodOf(now),
      );
      view.registry.add(root);
      view.writes.markDirty(root);
      return { ok: true as const, made: 'created' as const };
    },
  );
  if (r.made === 'replaced') log.warn('root key replaced by the one in INIT_USERS');
  if (r.made !== 'created') return undefined;
  if (seed !== undefined) {
    log.info('root account created from INIT_USERS');
    return undefined;
  }
  log.warn(
    'INIT_USERS is not set: generated a root key. It is printed once on stdout and cannot be shown again.',
  );
  process.stdout.write(`\n  proxyxai root key (shown once, store it safely): ${key}\n\n`);
  return key;
}
