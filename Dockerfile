# syntax=docker/dockerfile:1
# One image for the three apps: `p2p agent|proxy|tracker --config FILE.yaml`.
#   docker build -t registry.example.com/p2p/p2p-image-accelerator:0.1.0 .
# Debian slim (glibc), not Alpine: glibc is what the project is tested on, and the slim image
# has no compiler should an optional native helper ever need one.
ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Lockfile first so the dependency layer is reused until dependencies change. The local stub
# package must be present before `npm ci`: package.json overrides webrtc-polyfill with it (a
# dependency of bittorrent-tracker, which only the interop tests use).
COPY package.json package-lock.json .npmrc ./
COPY packages ./packages
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY apps ./apps
COPY libs ./libs
COPY bin ./bin
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -f dist/.tsbuildinfo

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
# Everything stays owned by root and read-only for the app user: the running app writes only to
# its data dir (a hostPath) and /tmp.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/packages ./packages
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
RUN ln -s /app/bin/p2p /usr/local/bin/p2p
# Numeric UID (the image's `node` user) so Kubernetes runAsNonRoot can verify it without a lookup.
USER 1000:1000
EXPOSE 5004 5005 6881 6882 6969
ENTRYPOINT ["p2p"]
CMD ["--help"]
