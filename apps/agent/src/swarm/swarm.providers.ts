import { join } from 'node:path';
import type { Provider } from '@nestjs/common';
import { MetricsService, SWARM_TOKEN, ThrottleService } from '#ops';
import { BlobCache } from '#registry';
import { BlobSeeder, createSeedingSwarm, ProxyRing, SwarmClient, SwarmMetrics, type SeedingSwarm } from '#swarm';
import { AgentConfig } from '../agent.config.js';
import { SwarmBlobFetcher } from './swarm-blob.fetcher.js';

const SEEDING_SWARM = Symbol('SEEDING_SWARM');

/** The agent's side of the swarm: proxy ring, BitTorrent client seeding its cache, the swarm fetcher. */
export const swarmProviders: Provider[] = [
  {
    provide: ProxyRing,
    inject: [AgentConfig],
    useFactory: async (config: AgentConfig) => {
      const ring = new ProxyRing({ proxies: config.proxies, refreshSeconds: config.proxyRefreshInterval });
      if (config.proxies.length > 0) await ring.start();
      return ring;
    },
  },
  {
    provide: SwarmMetrics,
    inject: [MetricsService],
    useFactory: (metrics: MetricsService) => new SwarmMetrics(metrics),
  },
  {
    provide: SEEDING_SWARM,
    inject: [AgentConfig, ThrottleService, SwarmMetrics, SWARM_TOKEN, BlobCache],
    useFactory: (
      config: AgentConfig,
      throttle: ThrottleService,
      metrics: SwarmMetrics,
      swarmToken: string | undefined,
      cache: BlobCache,
    ) =>
      createSeedingSwarm(
        {
          role: 'agent',
          port: config.p2pPort,
          trackers: config.trackers,
          swarmToken,
          throttle,
          limits: { download: 'downloadRate', upload: 'uploadRate' },
          maxSeeding: config.maxSeeding,
          seedTtlSeconds: config.seedTtl,
          metrics,
        },
        cache,
      ),
  },
  { provide: SwarmClient, inject: [SEEDING_SWARM], useFactory: (s: SeedingSwarm) => s.client },
  { provide: BlobSeeder, inject: [SEEDING_SWARM], useFactory: (s: SeedingSwarm) => s.seeder },
  {
    provide: SwarmBlobFetcher,
    inject: [AgentConfig, ProxyRing, SEEDING_SWARM, BlobCache, SWARM_TOKEN],
    useFactory: (config: AgentConfig, ring: ProxyRing, swarm: SeedingSwarm, cache: BlobCache, swarmToken: string | undefined) =>
      new SwarmBlobFetcher({
        ring,
        swarm: swarm.client,
        seeder: swarm.seeder,
        // Inside tmp/: the cache clears it at start, so a crash mid-download leaves nothing behind.
        downloadDir: join(cache.tmpDir, 'swarm'),
        swarmToken,
        minSize: config.p2pMinSize,
        // A cold proxy fetches the whole blob from the origin before it can answer.
        torrentTimeoutMs: 10 * 60_000,
      }),
  },
];
