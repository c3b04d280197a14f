import type { Provider } from '@nestjs/common';
import { MetricsService, SWARM_TOKEN, ThrottleService, throttledStream } from '#ops';
import {
  BlobAccessAuthorizer,
  BlobCache,
  BlobSourceChain,
  CachedBlobSource,
  FillingBlobSource,
  OriginFetcher,
  RegistryMetrics,
  UpstreamClient,
  UpstreamSet,
} from '#registry';
import { BlobSeeder, createSeedingSwarm, SwarmClient, SwarmMetrics, type SeedingSwarm } from '#swarm';
import { BlobTorrentService } from './blob-torrent.service.js';
import { ProxyConfig } from './proxy.config.js';

const SEEDING_SWARM = Symbol('SEEDING_SWARM');

/** The proxy's origin path (one fetch per blob, verified, cached) and its seeding swarm client. */
export const proxyProviders: Provider[] = [
  {
    provide: UpstreamSet,
    inject: [ProxyConfig],
    useFactory: (config: ProxyConfig) => new UpstreamSet(config.registry, config.registries),
  },
  {
    provide: UpstreamClient,
    inject: [ProxyConfig],
    useFactory: (config: ProxyConfig) =>
      new UpstreamClient({ connectTimeoutMs: config.upstreamConnectTimeout * 1000, headersTimeoutMs: config.upstreamHeadersTimeout * 1000 }),
  },
  {
    provide: BlobCache,
    inject: [ProxyConfig],
    useFactory: async (config: ProxyConfig) => {
      const cache = new BlobCache({
        dir: config.dataDir,
        maxBytes: config.cacheMaxBytes,
        highWatermark: config.cacheHighWatermark,
        lowWatermark: Math.min(config.cacheLowWatermark, config.cacheHighWatermark),
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
    inject: [UpstreamClient, ProxyConfig],
    useFactory: (client: UpstreamClient, config: ProxyConfig) => new BlobAccessAuthorizer(client, config.authCacheTtl * 1000),
  },
  {
    provide: BlobSourceChain,
    inject: [UpstreamClient, ThrottleService, BlobCache, RegistryMetrics],
    useFactory: (client: UpstreamClient, throttle: ThrottleService, cache: BlobCache, metrics: RegistryMetrics) => {
      // The proxy's only fetcher is the origin, limited by originRate; concurrent callers share one fill.
      const origin = new OriginFetcher(client, { throttle: () => throttledStream(throttle, 'originRate') });
      const filling = new FillingBlobSource(cache, [origin], {
        stallTimeoutMs: 60_000,
        onBytes: (source, n) => metrics.bytesFetched.inc({ source }, n),
        onFilled: (seconds, ok) => metrics.fetchDuration.observe({ result: ok ? 'ok' : 'error' }, seconds),
      });
      return new BlobSourceChain([new CachedBlobSource(cache), filling]);
    },
  },
  {
    provide: SwarmMetrics,
    inject: [MetricsService],
    useFactory: (metrics: MetricsService) => new SwarmMetrics(metrics),
  },
  {
    provide: SEEDING_SWARM,
    inject: [ProxyConfig, ThrottleService, SwarmMetrics, SWARM_TOKEN, BlobCache],
    useFactory: (config: ProxyConfig, throttle: ThrottleService, metrics: SwarmMetrics, swarmToken: string | undefined, cache: BlobCache) =>
      createSeedingSwarm(
        {
          role: 'proxy',
          port: config.p2pPort,
          trackers: config.trackers,
          swarmToken,
          throttle,
          limits: { upload: 'uploadRate' },
          maxSeeding: config.maxSeeding,
          seedTtlSeconds: config.seedTtl,
          uploadSlots: config.uploadSlots,
          metrics,
        },
        cache,
      ),
  },
  { provide: SwarmClient, inject: [SEEDING_SWARM], useFactory: (s: SeedingSwarm) => s.client },
  { provide: BlobSeeder, inject: [SEEDING_SWARM], useFactory: (s: SeedingSwarm) => s.seeder },
  BlobTorrentService,
];
