import type { InjectionToken, Provider } from '@nestjs/common';
import { MetricsService, SWARM_TOKEN, ThrottleService, type CacheNodeConfig } from '#ops';
import { SwarmClient, type SwarmRole } from '../client/swarm-client.js';
import { SwarmMetrics } from '../client/swarm.metrics.js';
import { BlobSeeder, type SeedableBlobStore } from './blob-seeder.js';
import { createSeedingSwarm, type SeedingSwarm } from './seeding-swarm.js';

export interface SeedingSwarmProvidersOptions<C extends CacheNodeConfig> {
  /** Token the app's config is provided under. */
  config: InjectionToken<C>;
  /** Token of the verified blob store to seed from (the registry cache). */
  store: InjectionToken<SeedableBlobStore>;
  role: SwarmRole;
  /** The app's throttle limit names the client follows. */
  limits: { download?: string; upload?: string };
  /** Peers unchoked at once per torrent, when the app configures it. */
  uploadSlots?: (config: C) => number;
}

const SEEDING_SWARM = Symbol('SEEDING_SWARM');

/** The process's BitTorrent client and the seeder of its cache, plus swarm metrics, as Nest providers. */
export function seedingSwarmProviders<C extends CacheNodeConfig>(options: SeedingSwarmProvidersOptions<C>): Provider[] {
  return [
    { provide: SwarmMetrics, inject: [MetricsService], useFactory: (m: MetricsService) => new SwarmMetrics(m) },
    {
      provide: SEEDING_SWARM,
      inject: [options.config, ThrottleService, SwarmMetrics, SWARM_TOKEN, options.store],
      useFactory: (config: C, throttle: ThrottleService, metrics: SwarmMetrics, swarmToken: string | undefined, store: SeedableBlobStore) =>
        createSeedingSwarm(
          {
            role: options.role,
            port: config.p2pPort,
            trackers: config.trackers,
            swarmToken,
            throttle,
            limits: options.limits,
            maxSeeding: config.maxSeeding,
            seedTtlSeconds: config.seedTtl,
            uploadSlots: options.uploadSlots?.(config),
            metrics,
          },
          store,
        ),
    },
    { provide: SwarmClient, inject: [SEEDING_SWARM], useFactory: (s: SeedingSwarm) => s.client },
    { provide: BlobSeeder, inject: [SEEDING_SWARM], useFactory: (s: SeedingSwarm) => s.seeder },
  ];
}
