import type { Provider } from '@nestjs/common';
import { ThrottleService, throttledStream } from '#ops';
import {
  BlobCache,
  BlobSourceChain,
  CachedBlobSource,
  FillingBlobSource,
  OriginFetcher,
  registryCoreProviders,
  RegistryMetrics,
  UpstreamClient,
} from '#registry';
import { seedingSwarmProviders } from '#swarm';
import { BlobTorrentService } from './blob-torrent.service.js';
import { ProxyConfig } from './proxy.config.js';

/** The proxy's origin path (one fetch per blob, verified, cached) and its seeding swarm client. */
export const proxyProviders: Provider[] = [
  ...registryCoreProviders(ProxyConfig),
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
  ...seedingSwarmProviders<ProxyConfig>({
    config: ProxyConfig,
    store: BlobCache,
    role: 'proxy',
    limits: { upload: 'uploadRate' },
    uploadSlots: (config) => config.uploadSlots,
  }),
  BlobTorrentService,
];
