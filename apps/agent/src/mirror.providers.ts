import type { Provider } from '@nestjs/common';
import { ThrottleService, throttledStream } from '#ops';
import {
  BlobAccessAuthorizer,
  BlobCache,
  BlobDelivery,
  BlobSourceChain,
  CachedBlobSource,
  FillingBlobSource,
  OriginFetcher,
  registryCoreProviders,
  RegistryMetrics,
  RegistryMirror,
  OriginClient,
  OriginSet,
  type BlobFetcher,
} from '#registry';
import { SwarmBlobFetcher } from '#swarm';
import { AgentConfig } from './agent.config.js';

/**
 * Ordered fetchers that fill the cache on a miss: the swarm, the proxy's relay, the origin. The mirror
 * itself only knows the source chain.
 */
const BLOB_FETCHERS = Symbol('BLOB_FETCHERS');

/** The agent's registry mirror: origins, origin client, verified cache, source chain. */
export const mirrorProviders: Provider[] = [
  ...registryCoreProviders(AgentConfig),
  {
    provide: BLOB_FETCHERS,
    inject: [OriginClient, ThrottleService, SwarmBlobFetcher, AgentConfig],
    useFactory: (client: OriginClient, throttle: ThrottleService, swarm: SwarmBlobFetcher, config: AgentConfig): BlobFetcher[] => [
      // Peers first when proxies are configured, then the owning proxy over HTTP for whatever a
      // stalled swarm left; the origin always last.
      ...(config.proxies.length > 0 ? [swarm, swarm.relayFallback()] : []),
      // Origin bytes count against the node's downloadRate.
      new OriginFetcher(client, { throttle: () => throttledStream(throttle, 'downloadRate') }),
    ],
  },
  {
    // How blob bodies go out: idle clients cut after clientIdleTimeout, one outcome line per blob.
    provide: BlobDelivery,
    inject: [AgentConfig, RegistryMetrics],
    useFactory: (config: AgentConfig, metrics: RegistryMetrics) =>
      new BlobDelivery({ clientIdleTimeoutMs: config.clientIdleTimeout * 1000 }, metrics),
  },
  {
    provide: RegistryMirror,
    inject: [OriginSet, OriginClient, BlobAccessAuthorizer, BlobCache, BLOB_FETCHERS, RegistryMetrics, AgentConfig],
    useFactory: (
      origins: OriginSet,
      client: OriginClient,
      authorizer: BlobAccessAuthorizer,
      cache: BlobCache,
      fetchers: BlobFetcher[],
      metrics: RegistryMetrics,
      config: AgentConfig,
    ) => {
      const onServed = metrics.served;
      const filling = new FillingBlobSource(cache, fetchers, {
        stallTimeoutMs: config.stallTimeout * 1000,
        stallMinRate: config.stallMinRate,
        onBytes: metrics.fetched,
        onFetcherFailed: metrics.fetcherFailed,
        onServed,
        onFilled: (seconds, ok) => metrics.fetchDuration.observe({ result: ok ? 'ok' : 'error' }, seconds),
        onUncached: metrics.passedUncached,
      });
      const chain = new BlobSourceChain([new CachedBlobSource(cache, onServed), filling]);
      return new RegistryMirror(origins, client, authorizer, chain);
    },
  },
];
