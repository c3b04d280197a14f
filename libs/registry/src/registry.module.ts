import { Module, type DynamicModule, type FactoryProvider, type OnApplicationShutdown, type Provider } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { MetricsService } from '#ops';
import { BlobCache } from './cache/blob-cache.js';
import type { BlobFillOptions } from './cache/blob-fill.js';
import { BlobAccessAuthorizer } from './mirror/blob-access.authorizer.js';
import { BlobDelivery } from './mirror/blob-delivery.js';
import { RegistryMirrorController } from './mirror/registry-mirror.controller.js';
import { RegistryMirror } from './mirror/registry-mirror.service.js';
import { RegistryMetrics } from './mirror/registry.metrics.js';
import { OriginSet } from './origin/origin-set.js';
import { OriginClient } from './origin/origin.client.js';
import type { CacheNodeConfig } from './registry.config.js';
import { BlobSourceChain, type BlobFetcher } from './sources/blob-source.js';
import { CachedBlobSource } from './sources/cached-blob.source.js';
import { FillingBlobSource } from './sources/filling-blob.source.js';

/** A value the module builds from other providers (the app's throttle, the swarm's fetcher…). */
type ModuleFactory<T> = Omit<FactoryProvider<T>, 'provide'>;

/** How an app fills its cache: the parts that differ between agent and proxy. */
interface FillSettings {
  /** Fetchers that fill the cache on a miss, in order; the last one must need no disk (the origin). */
  fetchers: BlobFetcher[];
  stallTimeoutMs: BlobFillOptions['stallTimeoutMs'];
  stallMinRate?: BlobFillOptions['stallMinRate'];
  observe?: BlobFillOptions['observe'];
}

export interface RegistryModuleOptions<C extends CacheNodeConfig = CacheNodeConfig> {
  /** The fill's fetchers and settings, built from injected providers. */
  fill: ModuleFactory<FillSettings>;
  /**
   * Serve the OCI distribution API (`/v2/…`) as a pull-through mirror: the agent. Without it the
   * module is the cache and origin path of an app with its own API (the proxy).
   */
  mirror?: boolean;
  /** Longest silence of an origin response body, seconds (0 = none); unset: the client's default. */
  originBodyTimeout?: (config: ConfigService<C, true>) => number;
}

/** Token of the app's FillSettings (built by the factory it passes to forRoot). */
const FILL_SETTINGS = Symbol('FILL_SETTINGS');

/**
 * The origin path and the verified blob cache of an app (agent, proxy): accelerated origins, the
 * origin client and its auth, the cache, the source chain (cache, then one shared fill per blob
 * through the fetchers), metrics, and with `mirror` the `/v2/` API. Settings come from the app's
 * validated config through ConfigService. Global, so the swarm module can seed from the cache
 * while the fill fetches through the swarm (their providers depend on each other one way each).
 * Owns what it opens: the origin client's connection pools are closed and the cache's retry timer
 * cleared at shutdown.
 */
@Module({})
export class RegistryModule implements OnApplicationShutdown {
  constructor(
    private readonly client: OriginClient,
    private readonly cache: BlobCache,
  ) {}

  /** `C`: the app's config class, which the option callbacks read. */
  static forRoot<C extends CacheNodeConfig>(options: RegistryModuleOptions<C>): DynamicModule {
    const providers: Provider[] = [
      {
        provide: OriginSet,
        inject: [ConfigService],
        useFactory: (config: ConfigService<CacheNodeConfig, true>) =>
          new OriginSet(config.get('registry', { infer: true }), config.get('registries', { infer: true })),
      },
      {
        provide: OriginClient,
        inject: [ConfigService],
        useFactory: (config: ConfigService<C, true>) => {
          const bodyTimeout = options.originBodyTimeout?.(config);
          const base = config as unknown as ConfigService<CacheNodeConfig, true>;
          return new OriginClient({
            connectTimeoutMs: base.get('originConnectTimeout', { infer: true }) * 1000,
            headersTimeoutMs: base.get('originHeadersTimeout', { infer: true }) * 1000,
            bodyTimeoutMs: bodyTimeout === undefined ? undefined : bodyTimeout * 1000,
          });
        },
      },
      {
        provide: BlobCache,
        inject: [ConfigService],
        useFactory: async (config: ConfigService<CacheNodeConfig, true>) => {
          const high = config.get('cacheHighWatermark', { infer: true });
          const cache = new BlobCache({
            dir: config.get('dataDir', { infer: true }),
            maxBytes: config.get('cacheMaxBytes', { infer: true }),
            highWatermark: high,
            lowWatermark: Math.min(config.get('cacheLowWatermark', { infer: true }), high),
            // Eviction also keeps this much disk free, and a blob that cannot fit is passed through.
            minFreeBytes: config.get('minFreeSpace', { infer: true }),
          });
          // Started before anything can inject it: the swarm seeds what the index holds.
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
        inject: [OriginClient, ConfigService],
        useFactory: (client: OriginClient, config: ConfigService<CacheNodeConfig, true>) =>
          new BlobAccessAuthorizer(client, config.get('authCacheTtl', { infer: true }) * 1000),
      },
      { provide: FILL_SETTINGS, ...options.fill },
      {
        provide: BlobSourceChain,
        inject: [BlobCache, RegistryMetrics, FILL_SETTINGS],
        useFactory: (cache: BlobCache, metrics: RegistryMetrics, fill: FillSettings) => {
          const filling = new FillingBlobSource(cache, fill.fetchers, {
            stallTimeoutMs: fill.stallTimeoutMs,
            stallMinRate: fill.stallMinRate,
            observe: fill.observe,
            onBytes: metrics.fetched,
            onFetcherFailed: metrics.fetcherFailed,
            onServed: metrics.served,
            onFilled: (seconds, ok) => metrics.fetchDuration.observe({ result: ok ? 'ok' : 'error' }, seconds),
            onUncached: metrics.passedUncached,
          });
          return new BlobSourceChain([new CachedBlobSource(cache, metrics.served), filling]);
        },
      },
      {
        // How blob bodies go out: idle clients cut after clientIdleTimeout, one outcome line per blob.
        provide: BlobDelivery,
        inject: [ConfigService, RegistryMetrics],
        useFactory: (config: ConfigService<CacheNodeConfig, true>, metrics: RegistryMetrics) =>
          new BlobDelivery({ clientIdleTimeoutMs: config.get('clientIdleTimeout', { infer: true }) * 1000 }, metrics),
      },
    ];
    if (options.mirror) {
      providers.push({
        provide: RegistryMirror,
        inject: [OriginSet, OriginClient, BlobAccessAuthorizer, BlobSourceChain],
        useFactory: (origins: OriginSet, client: OriginClient, authorizer: BlobAccessAuthorizer, chain: BlobSourceChain) =>
          new RegistryMirror(origins, client, authorizer, chain),
      });
    }
    return {
      module: RegistryModule,
      global: true,
      controllers: options.mirror ? [RegistryMirrorController] : [],
      providers,
      exports: [OriginSet, OriginClient, BlobCache, RegistryMetrics, BlobAccessAuthorizer, BlobSourceChain, BlobDelivery],
    };
  }

  async onApplicationShutdown(): Promise<void> {
    this.cache.stop();
    await this.client.close();
  }
}
