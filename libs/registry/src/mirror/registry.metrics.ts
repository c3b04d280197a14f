import type { Counter, Histogram } from 'prom-client';
import type { MetricsService } from '#ops';
import type { BlobCache } from '../cache/blob-cache.js';

/** The mirror's Prometheus metrics (requests by route/status come from the ops bootstrap). */
export class RegistryMetrics {
  readonly bytesServed: Counter<'source'>;
  readonly bytesFetched: Counter<'source'>;
  readonly fetchDuration: Histogram<'result'>;

  constructor(metrics: MetricsService, cache: BlobCache) {
    this.bytesServed = metrics.counter('blob_bytes_served_total', 'Blob bytes sent to clients, by where they came from (cache, origin, peer, proxy).', ['source']);
    this.bytesFetched = metrics.counter('blob_bytes_fetched_total', 'Blob bytes produced into the cache, by fetcher.', ['source']);
    this.fetchDuration = metrics.histogram('blob_fetch_duration_seconds', 'Time to produce one blob into the cache (all fetchers), by result.', ['result'], [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]);
    metrics.gauge('cache_bytes', 'Bytes of verified blobs in the cache.', [], function () {
      this.set(cache.stats().bytes);
    });
    metrics.gauge('cache_entries', 'Verified blobs in the cache.', [], function () {
      this.set(cache.stats().entries);
    });
    const evictions = metrics.counter('cache_evictions_total', 'Blobs evicted from the cache (LRU, quota).');
    cache.onEvict(() => evictions.inc());
  }
}
