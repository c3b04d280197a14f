import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { pooledCopy } from '../cache/pooled-copy.js';
import type { BlobCache } from '../cache/blob-cache.js';
import type { ByteRange } from '../oci/byte-range.js';
import type { BlobRequest, BlobSource, OpenedBlob } from './blob-source.js';

/** Serves verified blobs from the cache; the blob stays pinned until `release()`. */
export class CachedBlobSource implements BlobSource {
  constructor(
    private readonly cache: BlobCache,
    /** Bytes served from the cache (metrics). */
    private readonly onServed?: (source: string, n: number) => void,
  ) {}

  async open(request: BlobRequest): Promise<OpenedBlob | undefined> {
    const path = this.cache.path(request.digest);
    const size = this.cache.size(request.digest);
    if (path === undefined || size === undefined) return undefined;
    const release = this.cache.pin(request.digest);
    return {
      size,
      source: 'cache',
      read: (range?: ByteRange): Readable =>
        createReadStream(path, { start: range?.start ?? 0, end: range?.end ?? Math.max(0, size - 1), highWaterMark: 256 * 1024 }),
      copyTo: async (dest: Writable, range?: ByteRange): Promise<void> => {
        const fh = await open(path, 'r');
        try {
          const readAt = async (buf: Buffer, len: number, pos: number) => (await fh.read(buf, 0, len, pos)).bytesRead;
          await pooledCopy(readAt, range?.start ?? 0, range?.end ?? size - 1, dest, (n) => this.onServed?.('cache', n));
        } finally {
          await fh.close();
        }
      },
      release,
    };
  }
}
