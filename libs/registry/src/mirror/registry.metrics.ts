import type { Counter, Histogram } from 'prom-client';
import type { MetricsService } from '#ops';
import type { BlobCache } from '../cache/blob-cache.js';

/** How a blob response ended (see BlobDelivery). */
const BLOB_OUTCOMES = ['complete', 'client_gone', 'cut_idle', 'cut_error'] as const;
export type BlobOutcome = (typeof BLOB_OUTCOMES)[number];

/**
 * Requests whose client went away: before the response started (`before_response`: the error
 * filter saw the request fail because of it) or while a blob body was being sent (`during_body`).
 * Shared by name, so the filter and the mirror count into one series.
 */
export function clientDisconnects(metrics: MetricsService): Counter<'phase'> {
  return metrics.counter('client_disconnects_total', 'Requests whose client disconnected, by phase (before_response, during_body).', [
    'phase',
  ]);
}

/** The mirror's Prometheus metrics (requests by route/status come from the ops bootstrap). */
export class RegistryMetrics {
  private readonly bytesServed: Counter<'cache'>;
  private readonly bytesReceived: Counter<'source'>;
  private readonly bytesFetched: Counter<'fetcher'>;
  private readonly fetcherFailures: Counter<'fetcher'>;
  readonly fetchDuration: Histogram<'result'>;
  private readonly blobResponses: Counter<'cache' | 'outcome'>;
  private readonly clientDisconnects: Counter<'phase'>;
  private readonly uncached: Counter;

  constructor(metrics: MetricsService, cache: BlobCache) {
    this.bytesServed = metrics.counter(
      'blob_bytes_served_total',
      'Blob bytes sent to clients (agent: workloads; proxy: its relay), by cache: hit (a verified cache file) or miss (a fill in progress, or passed through uncached).',
      ['cache'],
    );
    this.bytesReceived = metrics.blobBytesReceived();
    this.bytesFetched = metrics.counter('blob_bytes_fetched_total', 'Blob bytes delivered into fills, by fetcher (swarm, relay, origin).', [
      'fetcher',
    ]);
    this.fetcherFailures = metrics.counter(
      'blob_fetcher_failures_total',
      'Fills in which a fetcher (swarm, relay, origin) failed or stalled and the next one took over, if any.',
      ['fetcher'],
    );
    this.fetchDuration = metrics.histogram(
      'blob_fetch_duration_seconds',
      'Time to produce one blob into the cache (all fetchers), by result.',
      ['result'],
      [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    );
    this.blobResponses = metrics.counter(
      'blob_responses_total',
      'Blob GET responses by cache (hit, miss) and outcome: complete, client_gone (the client disconnected), cut_idle (the client took no bytes for clientIdleTimeout), cut_error (the source failed mid-body: wrong digest, corrupt cache file, origin gone).',
      ['cache', 'outcome'],
    );
    this.clientDisconnects = clientDisconnects(metrics);
    this.uncached = metrics.counter(
      'blob_uncached_total',
      'Blobs passed through from the origin without caching: storing them would have crossed the free-space floor (minFreeSpace), or the data dir is unusable.',
    );
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
    for (const cache of ['hit', 'miss']) for (const outcome of BLOB_OUTCOMES) this.blobResponses.inc({ cache, outcome }, 0);
    for (const phase of ['before_response', 'during_body']) this.clientDisconnects.inc({ phase }, 0);
    const evictions = metrics.counter('cache_evictions_total', 'Blobs evicted from the cache (LRU, quota).');
    cache.onEvict(() => evictions.inc());
    const corrupt = metrics.counter(
      'cache_corrupt_total',
      'Cached blob files found not to be their blob (missing, changed on disk, cut short, wrong sha256) and evicted.',
    );
    cache.onCorrupt(() => corrupt.inc());
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

  /** One blob response over: `source` is `cache` or the fetcher that produced its first byte. */
  blobResponse(source: string, outcome: BlobOutcome): void {
    this.blobResponses.inc({ cache: source === 'cache' ? 'hit' : 'miss', outcome });
    if (outcome === 'client_gone') this.clientDisconnects.inc({ phase: 'during_body' });
  }

  /** For FillingBlobSource `onUncached`. */
  readonly passedUncached = (): void => {
    this.uncached.inc();
  };

  /** For the fill's `onFetcherFailed`. */
  readonly fetcherFailed = (fetcher: string): void => {
    this.fetcherFailures.inc({ fetcher });
  };
}
