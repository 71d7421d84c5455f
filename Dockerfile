FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY tsconfig.json ./
COPY bin ./bin
COPY src ./src
COPY connections ./connections
ENV NODE_ENV=production
# Set ADMIN_TOKEN in production; without it the engine keeps a generated one here.
RUN mkdir -p /app/.unsub-relay && chown node:node /app/.unsub-relay
USER node
EXPOSE 8080
CMD ["node", "bin/unsub-relay.js", "start"]
