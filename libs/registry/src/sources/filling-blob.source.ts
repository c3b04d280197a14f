import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { Logger } from '@nestjs/common';
import { systemClock } from '#ops';
import type { BlobCache } from '../cache/blob-cache.js';
import { BlobFill, type BlobFillOptions } from '../cache/blob-fill.js';
import type { ByteRange } from '../oci/byte-range.js';
import { CachedBlobSource } from './cached-blob.source.js';
import type { BlobFetcher, BlobRequest, BlobSource, OpenedBlob } from './blob-source.js';
import { uncachedBlob } from './uncached-blob.js';

/**
 * The producing end of the chain: one fill per digest at a time (singleflight), shared by every
 * concurrent request, which all stream from it as bytes arrive. Fetchers are tried in order; the
 * last one must need no disk of its own (the origin): it also serves blobs the cache has no room for.
 */
export class FillingBlobSource implements BlobSource {
  private readonly logger = new Logger(FillingBlobSource.name);
  private readonly fills = new Map<string, BlobFill>();

  constructor(
    private readonly cache: BlobCache,
    private readonly fetchers: readonly BlobFetcher[],
    private readonly options: BlobFillOptions & {
      /** Bytes sent to clients from a fill, by the fetcher that produced them. */
      onServed?: (source: string, n: number) => void;
      /** Duration of every finished fill, seconds, and whether it produced a verified blob. */
      onFilled?: (seconds: number, ok: boolean) => void;
      /** A blob served uncached: no room above the free-space floor, or the data dir unusable. */
      onUncached?: () => void;
    },
  ) {}

  async open(request: BlobRequest): Promise<OpenedBlob | undefined> {
    // No room to cache it (disk full, data dir unusable): serve it from the last fetcher — the
    // origin, which needs no disk — rather than fail the pull half-way on ENOSPC.
    if (request.size !== undefined && !this.fills.has(request.digest) && !this.cache.has(request.digest)) {
      if (!(await this.cache.canHold(request.size))) {
        const last = this.fetchers.at(-1);
        if (last) {
          this.logger.warn({
            msg: `no room in the cache; serving it from ${last.name} uncached`,
            digest: request.digest,
            bytes: request.size,
            source: last.name,
          });
          this.options.onUncached?.();
          return uncachedBlob(last, request, request.size, this.options.onServed);
        }
      }
    }
    const fill = this.join(request);
    if (!fill) {
      // Committed a moment ago; if that file already proved bad (evicted), fill it again.
      const cached = await new CachedBlobSource(this.cache, this.options.onServed).open(request);
      return cached ?? (this.cache.has(request.digest) ? undefined : this.open(request));
    }
    try {
      const size = await fill.sized;
      return {
        size,
        get source() {
          return fill.sourceAt(0);
        },
        read: (range?: ByteRange) => fill.read(range, this.options.onServed),
        copyTo: (dest: Writable, range?: ByteRange) => fill.copyTo(dest, range, this.options.onServed),
        // Reads the fill back rather than awaiting fill.done: the read-back is the I/O pattern the
        // proxy's cold-fill figures were measured with (BENCHMARKS, "proxy cold fill: a GC state").
        drain: () => finished(fill.read(undefined).resume()),
        release: () => fill.release(),
      };
    } catch (err) {
      fill.release();
      throw err;
    }
  }

  private join(request: BlobRequest): BlobFill | undefined {
    const existing = this.fills.get(request.digest);
    if (existing?.filling) {
      existing.retain();
      return existing;
    }
    // The fill may have just committed: then the cache has it and the chain's cache source missed by a hair.
    if (this.cache.has(request.digest)) return undefined;
    const clock = this.options.clock ?? systemClock;
    const started = clock.now();
    const fill = new BlobFill(this.cache, request, this.fetchers, this.options);
    this.fills.set(request.digest, fill);
    const finished = (ok: boolean) => {
      if (this.fills.get(request.digest) === fill) this.fills.delete(request.digest);
      this.options.onFilled?.((clock.now() - started) / 1000, ok);
      for (const fetcher of this.fetchers) fetcher.settled?.(request.digest, ok);
    };
    void fill.done.then(
      () => finished(true),
      () => finished(false),
    );
    return fill;
  }
}
