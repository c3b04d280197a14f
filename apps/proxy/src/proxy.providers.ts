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
  OriginClient,
  type BlobRequest,
  type FillObserver,
} from '#registry';
import { BlobSeeder, BlobTorrentService, PieceHasher, pieceLengthFor, seedingSwarmProviders } from '#swarm';
import { ProxyConfig } from './proxy.config.js';

/** The proxy's origin path (one fetch per blob, verified, cached) and its seeding swarm client. */
export const proxyProviders: Provider[] = [
  ...registryCoreProviders(ProxyConfig),
  {
    provide: BlobSourceChain,
    inject: [OriginClient, ThrottleService, BlobCache, RegistryMetrics, BlobSeeder],
    useFactory: (client: OriginClient, throttle: ThrottleService, cache: BlobCache, metrics: RegistryMetrics, seeder: BlobSeeder) => {
      // The proxy's only fetcher is the origin, limited by originRate; concurrent callers share one fill.
      const origin = new OriginFetcher(client, { throttle: () => throttledStream(throttle, 'originRate') });
      const filling = new FillingBlobSource(cache, [origin], {
        stallTimeoutMs: 60_000,
        onBytes: metrics.fetched,
        onFetcherFailed: metrics.fetcherFailed,
        onServed: metrics.served,
        onFilled: (seconds, ok) => metrics.fetchDuration.observe({ result: ok ? 'ok' : 'error' }, seconds),
        observe: hashPiecesInto(seeder),
      });
      return new BlobSourceChain([new CachedBlobSource(cache, metrics.served), filling]);
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

/**
 * SHA-1s every piece while the origin fill streams through, and hands them to the seeder once the
 * blob is verified and committed, so its torrent needs no second pass over the file. A failed fill
 * hands nothing over: its hashes go with the observer.
 */
function hashPiecesInto(seeder: BlobSeeder): (request: BlobRequest, size: number) => FillObserver {
  return (request, size) => {
    const hasher = new PieceHasher(size, pieceLengthFor(size));
    return {
      data: hasher.data,
      // A miscount would be the fill's bug; the seeder then hashes the file rather than this throwing into the fill.
      committed: () => {
        if (hasher.bytesSeen === size) seeder.offerPieces(request.digest, hasher.digest());
      },
    };
  };
}
