# syntax=docker/dockerfile:1
#
# proxyxai production image: Node.js 24 LTS (Debian bookworm, slim), production dependencies only,
# runs as the unprivileged `node` user, data on the /data volume.
#
#   docker build -t proxyxai .
#   docker compose up -d            # the whole stack: see docker-compose.yml and README "Deploy"
#
# Node line: 24 is the current LTS (supported until April 2028); Node 20 left support in April 2026.
# On Node 24 the store loads better-sqlite3 13 (`better-sqlite3-napi`, a Node-API build with its
# binaries inside the package); better-sqlite3 12 is still installed (and compiled in the deps stage)
# because package.json names it, but it is never loaded there (src/store/sqlite/driver.ts).
# Another Node line: docker build --build-arg NODE_IMAGE=node:22-bookworm-slim .
ARG NODE_IMAGE=node:24-bookworm-slim

# ---- deps: production dependencies only, native modules compiled here ---------------------------
FROM ${NODE_IMAGE} AS deps
# node-gyp's toolchain, used when no prebuilt better-sqlite3 12 binary can be downloaded. It stays
# in this stage: the runtime stage copies node_modules only.
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: npm ci would run the package's own `prepare` (tsc, a dev dependency, absent
# here). The one install script production needs, better-sqlite3's, runs in `npm rebuild`.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
  && npm rebuild better-sqlite3 \
  && npm cache clean --force

# ---- build: every dependency, TypeScript compiled to dist/ ---------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
# No install script is needed to compile: tsc is plain JavaScript.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
RUN npm run build

# ---- runtime ---------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV PORT=3443 \
    HOST=0.0.0.0 \
    DATA_DIR=/data
WORKDIR /app
# What dist/main.js reads at run time, relative to the package root: package.json ("type":
# "module"), node_modules, config/prices.json (the price table) and pages/ (billing, user, docs).
# Copied files belong to root: the gateway (user node) can read the code but not change it.
COPY package.json package-lock.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY config ./config
COPY pages ./pages
# Fails the build if the image's Node cannot load the SQLite driver it picks (13 on Node-API >= 10).
RUN node -e "import('./dist/store/sqlite/driver.js').then((m) => console.log('SQLite driver: ' + m.sqliteDriverPackage))"
# Only /data is the gateway's. A named volume mounted there starts with this owner and mode.
RUN mkdir -p /data && chown node:node /data && chmod 0700 /data
VOLUME ["/data"]
USER node
EXPOSE 3443
# Ready = the store answers, at least one upstream key is usable (and Redis answers, when set):
# a fresh stack without INIT_KEYS is "unhealthy" until a key is added through /x-keys.
# The slim image has no curl: Node's fetch does it.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3443) + '/readyz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself, stops accepting connections, lets requests
# in flight finish (DRAIN_TIMEOUT_MS, 30 s), writes the last batch and exits. Give `docker stop` /
# compose more than that (stop_grace_period in docker-compose.yml).
STOPSIGNAL SIGTERM
# The flags of `npm start` (a test keeps them equal): V8's young generation capped at 8 MB per
# semi-space, 14 MB less resident memory under load for about 1 % more CPU.
CMD ["node", "--max-semi-space-size=8", "dist/main.js"]
