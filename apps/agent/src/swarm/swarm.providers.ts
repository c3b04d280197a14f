import { join } from 'node:path';
import { Logger, type Provider } from '@nestjs/common';
import { readConfiguredFile, SWARM_TOKEN, ThrottleService, throttledStream } from '#ops';
import { BlobCache } from '#registry';
import { BlobSeeder, ProxyRing, seedingSwarmProviders, SwarmBlobFetcher, SwarmClient, SwarmMetrics } from '#swarm';
import { AgentConfig } from '../agent.config.js';

/** The agent's side of the swarm: proxy ring, BitTorrent client seeding its cache, the swarm fetcher. */
export const swarmProviders: Provider[] = [
  {
    provide: ProxyRing,
    inject: [AgentConfig],
    useFactory: async (config: AgentConfig) => {
      const plain = config.proxies.filter((url) => !url.toLowerCase().startsWith('https:'));
      if (plain.length > 0) {
        new Logger('Tls').warn({
          msg: "proxies reached over plain HTTP: clients' registry credentials and the swarm token cross the network in clear; serve the proxies over TLS (tlsCertFile, tlsKeyFile) and list them as https:// with proxyCaFile (README, TLS between agents and proxies)",
          proxies: plain,
        });
      }
      // Read once at start (a renewed CA takes a restart); unreadable: the agent does not start.
      const ca = config.proxyCaFile ? readConfiguredFile('proxyCaFile', config.proxyCaFile) : undefined;
      const ring = new ProxyRing({ proxies: config.proxies, refreshSeconds: config.proxyRefreshInterval, ca });
      if (config.proxies.length > 0) await ring.start();
      return ring;
    },
  },
  ...seedingSwarmProviders<AgentConfig>({
    config: AgentConfig,
    store: BlobCache,
    role: 'agent',
    limits: { download: 'downloadRate', upload: 'uploadRate' },
  }),
  {
    provide: SwarmBlobFetcher,
    inject: [AgentConfig, ProxyRing, SwarmClient, BlobSeeder, BlobCache, SWARM_TOKEN, ThrottleService, SwarmMetrics],
    useFactory: (
      config: AgentConfig,
      ring: ProxyRing,
      swarm: SwarmClient,
      seeder: BlobSeeder,
      cache: BlobCache,
      swarmToken: string | undefined,
      throttle: ThrottleService,
      metrics: SwarmMetrics,
    ) =>
      new SwarmBlobFetcher({
        ring,
        swarm,
        seeder,
        // Inside tmp/: the cache clears it at start, so a crash mid-download leaves nothing behind.
        downloadDir: join(cache.tmpDir, 'swarm'),
        swarmToken,
        minSize: config.p2pMinSize,
        // A cold proxy fetches the whole blob from the origin before it can answer.
        torrentTimeoutMs: 10 * 60_000,
        // Relayed bytes come over HTTP, so they count against downloadRate like origin bytes.
        relayThrottle: () => throttledStream(throttle, 'downloadRate'),
        onRelayBytes: (n) => metrics.addBytes('relay', n),
        // A late piece is fetched over the relay after twice the stall timeout (four times while it arrives).
        rescueAfterMs: 2 * config.stallTimeout * 1000,
        onRescueBytes: (n) => metrics.addBytes('relay', n),
      }),
  },
];
