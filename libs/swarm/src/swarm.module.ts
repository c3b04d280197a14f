import { join } from 'node:path';
import { Logger, Module, Optional, type DynamicModule, type OnApplicationShutdown, type Provider } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { MetricsService, readConfiguredFile, SWARM_TOKEN, ThrottleService, throttledStream } from '#ops';
import { BlobCache } from '#registry';
import { AdminTorrentsController } from './admin/admin-torrents.controller.js';
import { SwarmClient, type SwarmRole } from './client/swarm-client.js';
import { SwarmMetrics } from './client/swarm.metrics.js';
import { SwarmBlobFetcher } from './fetcher/swarm-blob.fetcher.js';
import { BlobTorrentService } from './proxy/blob-torrent.service.js';
import { ProxyApiController } from './proxy/proxy-api.controller.js';
import { ProxyRing } from './proxy/ring/proxy-ring.js';
import { BlobSeeder } from './seeding/blob-seeder.js';
import { createSeedingSwarm, type SeedingSwarm } from './seeding/seeding-swarm.js';
import type { SwarmFetcherConfig, SwarmNodeConfig } from './swarm.config.js';

export interface SwarmModuleOptions<C extends SwarmNodeConfig = SwarmNodeConfig> {
  /**
   * agent: fetches blobs from the swarm through the proxies (ring, swarm fetcher) and seeds its
   * cache; proxy: the original seed, serving the proxy API (torrents, relay) from its cache.
   */
  role: SwarmRole;
  /** The app's throttle limits the swarm client and the relay follow (limit names = config keys). */
  limits: { download?: string; upload?: string };
  /** Peers unchoked at once per torrent, when the app has a key for it (the proxy's `uploadSlots`). */
  uploadSlots?: (config: ConfigService<C, true>) => number;
}

const SEEDING_SWARM = Symbol('SEEDING_SWARM');

/** A cold proxy fetches the whole blob from the origin before it can answer a torrent request. */
const TORRENT_TIMEOUT_MS = 10 * 60_000;

/**
 * The process's side of the swarm: its BitTorrent client and the seeder of the registry cache
 * (libs/registry's BlobCache, which must be in the app), `/admin/torrents`, and per role the
 * agent's proxy ring and swarm fetcher or the proxy's torrent service and API. Settings come from
 * the app's validated config through ConfigService. Global, so the registry module's fill can use
 * the swarm fetcher. Owns what it opens: at shutdown the ring's timer and connections, the seeder
 * and the client's sockets and files are closed.
 */
@Module({})
export class SwarmModule implements OnApplicationShutdown {
  constructor(
    private readonly swarm: SwarmClient,
    private readonly seeder: BlobSeeder,
    // Agents only.
    @Optional() private readonly ring?: ProxyRing,
  ) {}

  /** `C`: the app's config class, which the option callbacks read. */
  static forRoot<C extends SwarmNodeConfig>(options: SwarmModuleOptions<C>): DynamicModule {
    const providers: Provider[] = [
      { provide: SwarmMetrics, inject: [MetricsService], useFactory: (m: MetricsService) => new SwarmMetrics(m) },
      {
        provide: SEEDING_SWARM,
        inject: [ConfigService, ThrottleService, SwarmMetrics, SWARM_TOKEN, BlobCache],
        useFactory: (
          config: ConfigService<SwarmNodeConfig, true>,
          throttle: ThrottleService,
          metrics: SwarmMetrics,
          swarmToken: string | undefined,
          store: BlobCache,
        ) =>
          createSeedingSwarm(
            {
              role: options.role,
              port: config.get('p2pPort', { infer: true }),
              trackers: config.get('trackers', { infer: true }),
              swarmToken,
              throttle,
              limits: options.limits,
              maxSeeding: config.get('maxSeeding', { infer: true }),
              seedTtlSeconds: config.get('seedTtl', { infer: true }),
              uploadSlots: options.uploadSlots?.(config),
              metrics,
            },
            store,
          ),
      },
      { provide: SwarmClient, inject: [SEEDING_SWARM], useFactory: (s: SeedingSwarm) => s.client },
      { provide: BlobSeeder, inject: [SEEDING_SWARM], useFactory: (s: SeedingSwarm) => s.seeder },
      ...(options.role === 'agent' ? fetcherProviders(options) : [BlobTorrentService]),
    ];
    return {
      module: SwarmModule,
      global: true,
      controllers: options.role === 'agent' ? [AdminTorrentsController] : [AdminTorrentsController, ProxyApiController],
      providers,
      exports: [
        SwarmClient,
        BlobSeeder,
        SwarmMetrics,
        ...(options.role === 'agent' ? [ProxyRing, SwarmBlobFetcher] : [BlobTorrentService]),
      ],
    };
  }

  async onApplicationShutdown(): Promise<void> {
    this.ring?.stop();
    this.seeder.close();
    await this.swarm.destroy();
  }
}

/** The agent's ring of proxies and the fetcher that gets blobs from the swarm through them. */
function fetcherProviders(options: Pick<SwarmModuleOptions, 'limits'>): Provider[] {
  return [
    {
      provide: ProxyRing,
      inject: [ConfigService],
      useFactory: async (config: ConfigService<SwarmFetcherConfig, true>) => {
        const proxies = config.get('proxies', { infer: true });
        const plain = proxies.filter((url) => !url.toLowerCase().startsWith('https:'));
        if (plain.length > 0) {
          new Logger('Tls').warn({
            msg: "proxies reached over plain HTTP: clients' registry credentials and the swarm token cross the network in clear; serve the proxies over TLS (tlsCertFile, tlsKeyFile) and list them as https:// with proxyCaFile (README, TLS between agents and proxies)",
            proxies: plain,
          });
        }
        // Read once at start (a renewed CA takes a restart); unreadable: the agent does not start.
        const caFile = config.get('proxyCaFile', { infer: true });
        const ca = caFile ? readConfiguredFile('proxyCaFile', caFile) : undefined;
        const ring = new ProxyRing({ proxies, refreshSeconds: config.get('proxyRefreshInterval', { infer: true }), ca });
        if (proxies.length > 0) await ring.start();
        return ring;
      },
    },
    {
      provide: SwarmBlobFetcher,
      inject: [ConfigService, ProxyRing, SwarmClient, BlobSeeder, BlobCache, SWARM_TOKEN, ThrottleService, SwarmMetrics],
      useFactory: (
        config: ConfigService<SwarmFetcherConfig, true>,
        ring: ProxyRing,
        swarm: SwarmClient,
        seeder: BlobSeeder,
        cache: BlobCache,
        swarmToken: string | undefined,
        throttle: ThrottleService,
        metrics: SwarmMetrics,
      ) => {
        const download = options.limits.download;
        return new SwarmBlobFetcher({
          ring,
          swarm,
          seeder,
          // Inside tmp/: the cache clears it at start, so a crash mid-download leaves nothing behind.
          downloadDir: join(cache.tmpDir, 'swarm'),
          swarmToken,
          minSize: config.get('p2pMinSize', { infer: true }),
          torrentTimeoutMs: TORRENT_TIMEOUT_MS,
          // Relayed bytes come over HTTP, so they count against the download limit like origin bytes.
          relayThrottle: download === undefined ? undefined : () => throttledStream(throttle, download),
          onRelayBytes: (n) => metrics.addBytes('relay', n),
          // A late piece is fetched over the relay after twice the stall timeout (four times while it arrives).
          rescueAfterMs: 2 * config.get('stallTimeout', { infer: true }) * 1000,
          onRescueBytes: (n) => metrics.addBytes('relay', n),
        });
      },
    },
  ];
}
