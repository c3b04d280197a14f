import type { Counter, Histogram } from 'prom-client';
import type { MetricsService } from '#ops';
import type { BlobCache } from '../cache/blob-cache.js';

/** The mirror's Prometheus metrics (requests by route/status come from the ops bootstrap). */
export class RegistryMetrics {
  private readonly bytesServed: Counter<'cache'>;
  private readonly bytesReceived: Counter<'source'>;
  private readonly bytesFetched: Counter<'fetcher'>;
  private readonly fetcherFailures: Counter<'fetcher'>;
  readonly fetchDuration: Histogram<'result'>;

  constructor(metrics: MetricsService, cache: BlobCache) {
    this.bytesServed = metrics.counter(
      'blob_bytes_served_total',
      'Blob bytes sent to clients (agent: workloads; proxy: its relay), by cache: hit (a verified cache file) or miss (a fill in progress, or passed through uncached).',
      ['cache'],
    );
    this.bytesReceived = metrics.blobBytesReceived();
    this.bytesFetched = metrics.counter('blob_bytes_fetched_total', 'Blob bytes delivered into fills, by fetcher (swarm, relay, origin).', ['fetcher']);
    this.fetcherFailures = metrics.counter('blob_fetcher_failures_total', 'Fills in which a fetcher (swarm, relay, origin) failed or stalled and the next one took over, if any.', ['fetcher']);
    this.fetchDuration = metrics.histogram('blob_fetch_duration_seconds', 'Time to produce one blob into the cache (all fetchers), by result.', ['result'], [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]);
    metrics.gauge('cache_bytes', 'Bytes of verified blobs in the cache.', [], function () {
      this.set(cache.stats().bytes);
    });
    metrics.gauge('cache_entries', 'Verified blobs in the cache.', [], function () {
      this.set(cache.stats().entries);
    });
    // Every known series from 0: a series born at its first increment hides that increment from rate().
    for (const cache of ['hit', 'miss']) this.bytesServed.inc({ cache }, 0);
    this.fetcherFailures.inc({ fetcher: 'swarm' }, 0);
    this.fetcherFailures.inc({ fetcher: 'origin' }, 0);
    const evictions = metrics.counter('cache_evictions_total', 'Blobs evicted from the cache (LRU, quota).');
    cache.onEvict(() => evictions.inc());
  }

  /** For FillingBlobSource / CachedBlobSource `onServed`: `source` is `cache` or the fetcher that produced the bytes. */
  readonly served = (source: string, n: number): void => {
    this.bytesServed.inc({ cache: source === 'cache' ? 'hit' : 'miss' }, n);
  };

  /**
   * For the fill's `onBytes`: bytes by fetcher; origin bytes also count as received from the
   * origin (the swarm's fetchers count what they receive by proxy, peer and relay themselves).
   */
  readonly fetched = (fetcher: string, n: number): void => {
    this.bytesFetched.inc({ fetcher }, n);
    if (fetcher === 'origin') this.bytesReceived.inc({ source: 'origin' }, n);
  };

  /** For the fill's `onFetcherFailed`. */
  readonly fetcherFailed = (fetcher: string): void => {
    this.fetcherFailures.inc({ fetcher });
  };
}
