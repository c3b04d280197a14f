import type { InjectionToken, Provider } from '@nestjs/common';
import { MetricsService, type CacheNodeConfig } from '#ops';
import { BlobCache } from './cache/blob-cache.js';
import { BlobAccessAuthorizer } from './mirror/blob-access.authorizer.js';
import { RegistryMetrics } from './mirror/registry.metrics.js';
import { UpstreamClient } from './upstream/upstream.client.js';
import { UpstreamSet } from './upstream/upstream-set.js';

/**
 * What every app that talks to the origin and keeps a blob cache needs (agent and proxy): the
 * accelerated upstreams, the origin client with its auth, the verified cache, its metrics and the
 * per-request access check. `config` is the token the app's config is provided under.
 */
export function registryCoreProviders(config: InjectionToken<CacheNodeConfig>): Provider[] {
  return [
    {
      provide: UpstreamSet,
      inject: [config],
      useFactory: (c: CacheNodeConfig) => new UpstreamSet(c.registry, c.registries),
    },
    {
      provide: UpstreamClient,
      inject: [config],
      // upstreamBodyTimeout is an agent key; the proxy (its origin reads are fills with their own stall rule) gets the client's default.
      useFactory: (c: CacheNodeConfig & { upstreamBodyTimeout?: number }) =>
        new UpstreamClient({
          connectTimeoutMs: c.upstreamConnectTimeout * 1000,
          headersTimeoutMs: c.upstreamHeadersTimeout * 1000,
          bodyTimeoutMs: c.upstreamBodyTimeout === undefined ? undefined : c.upstreamBodyTimeout * 1000,
        }),
    },
    {
      provide: BlobCache,
      inject: [config],
      useFactory: async (c: CacheNodeConfig) => {
        const cache = new BlobCache({
          dir: c.dataDir,
          maxBytes: c.cacheMaxBytes,
          highWatermark: c.cacheHighWatermark,
          lowWatermark: Math.min(c.cacheLowWatermark, c.cacheHighWatermark),
          // Eviction also keeps this much disk free, and a blob that cannot fit is passed through.
          minFreeBytes: c.minFreeSpace,
        });
        await cache.start();
        return cache;
      },
    },
    {
      provide: RegistryMetrics,
      inject: [MetricsService, BlobCache],
      useFactory: (metrics: MetricsService, cache: BlobCache) => new RegistryMetrics(metrics, cache),
    },
    {
      provide: BlobAccessAuthorizer,
      inject: [UpstreamClient, config],
      useFactory: (client: UpstreamClient, c: CacheNodeConfig) => new BlobAccessAuthorizer(client, c.authCacheTtl * 1000),
    },
  ];
}
