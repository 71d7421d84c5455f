# syntax=docker/dockerfile:1
# Node 24 LTS. The sources run as TypeScript through tsx (a production dependency), so there is no
# compile step: the first stage only installs production dependencies, and the runtime stage gets
# them without npm's cache or anything a native addon's install needed.
FROM node:24-bookworm-slim AS dependencies
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim
# tini as PID 1: forwards SIGTERM to the engine (which then drains) and reaps children, without
# relying on `docker run --init`.
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=dependencies /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY bin ./bin
COPY src ./src
COPY connections ./connections
# Set ADMIN_TOKEN in production; without it the engine keeps a generated one in .unsub-relay.
# `unsub-relay` on the PATH, for `docker compose exec engine unsub-relay ...`.
RUN mkdir -p /app/.unsub-relay \
  && chown node:node /app/.unsub-relay \
  && ln -s /app/bin/unsub-relay.js /usr/local/bin/unsub-relay
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "bin/unsub-relay.js", "start"]
