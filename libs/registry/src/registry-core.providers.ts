import type { InjectionToken, Provider } from '@nestjs/common';
import { MetricsService, type CacheNodeConfig } from '#ops';
import { BlobCache } from './cache/blob-cache.js';
import { BlobAccessAuthorizer } from './mirror/blob-access.authorizer.js';
import { RegistryMetrics } from './mirror/registry.metrics.js';
import { OriginClient } from './origin/origin.client.js';
import { OriginSet } from './origin/origin-set.js';

/**
 * What every app that talks to the origin and keeps a blob cache needs (agent and proxy): the
 * accelerated origins, the origin client with its auth, the verified cache, its metrics and the
 * per-request access check. `config` is the token the app's config is provided under.
 */
export function registryCoreProviders(config: InjectionToken<CacheNodeConfig>): Provider[] {
  return [
    {
      provide: OriginSet,
      inject: [config],
      useFactory: (c: CacheNodeConfig) => new OriginSet(c.registry, c.registries),
    },
    {
      provide: OriginClient,
      inject: [config],
      // originBodyTimeout is an agent key; the proxy (its origin reads are fills with their own stall rule) gets the client's default.
      useFactory: (c: CacheNodeConfig & { originBodyTimeout?: number }) =>
        new OriginClient({
          connectTimeoutMs: c.originConnectTimeout * 1000,
          headersTimeoutMs: c.originHeadersTimeout * 1000,
          bodyTimeoutMs: c.originBodyTimeout === undefined ? undefined : c.originBodyTimeout * 1000,
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
      inject: [OriginClient, config],
      useFactory: (client: OriginClient, c: CacheNodeConfig) => new BlobAccessAuthorizer(client, c.authCacheTtl * 1000),
    },
  ];
}
