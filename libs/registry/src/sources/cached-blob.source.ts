import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable, type Writable } from 'node:stream';
import { Logger } from '@nestjs/common';
import { fileIdentity, sameFile, type BlobCache, type FileIdentity } from '../cache/blob-cache.js';
import { pooledCopy } from '../cache/pooled-copy.js';
import type { ByteRange } from '../oci/byte-range.js';
import type { BlobRequest, BlobSource, OpenedBlob } from './blob-source.js';

/** A cached blob's file proved not to be the blob (changed, cut short, wrong bytes): it has been evicted. */
export class CachedBlobCorruptError extends Error {
  constructor(
    readonly digest: string,
    readonly reason: string,
  ) {
    super(`${digest}: cached file ${reason}`);
    this.name = 'CachedBlobCorruptError';
  }
}

const READ_CHUNK = 256 * 1024;
const VERIFY_CHUNK = 1024 * 1024;

/**
 * Serves verified blobs from the cache; the blob stays pinned until `release()`.
 *
 * A file on disk can stop being the blob (a disk or a person wrote to it, a crash cut it short, it
 * was deleted), so nothing is served on the cache's word alone:
 * - at open, the file must exist, have the blob's size, and be the very file this process verified
 *   (same inode, size, mtime and ctime); a blob found on disk at start is hashed in full once before
 *   its first use. A file failing this is evicted and `open` answers undefined, so the request falls
 *   through to the next source (a fill) before any byte is sent;
 * - a whole-blob read is hashed as it is sent and its last chunk held back until the sha256 matches
 *   (as fills do), which also catches what identity cannot (bit rot, a change during the read):
 *   the read fails instead, the connection is cut and the blob is evicted for the next request.
 * Cost: one sha256 pass per whole-blob read, about 0.5 CPU ms/MB here (bench/datapath/serve-bench.ts:
 * 0.25 → 0.74 ms/MB for a cache hit); range reads cost nothing extra.
 */
export class CachedBlobSource implements BlobSource {
  private readonly logger = new Logger(CachedBlobSource.name);
  /** Start-up verifications in progress, shared by concurrent requests: digest → problem found (or undefined). */
  private readonly verifying = new Map<string, Promise<string | undefined>>();

  constructor(
    private readonly cache: BlobCache,
    /** Bytes served from the cache (metrics). */
    private readonly onServed?: (source: string, n: number) => void,
  ) {}

  async open(request: BlobRequest): Promise<OpenedBlob | undefined> {
    const { digest } = request;
    const path = this.cache.path(digest);
    const size = this.cache.size(digest);
    if (path === undefined || size === undefined) return undefined;
    const unpin = this.cache.pin(digest);
    let fh: FileHandle | undefined;
    let identity: FileIdentity | undefined;
    let problem: string | undefined;
    try {
      fh = await open(path, 'r');
      identity = fileIdentity(await fh.stat());
      problem = await this.check(digest, fh, identity, size);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        await fh?.close().catch(() => undefined);
        unpin();
        throw err;
      }
      problem = 'is missing';
    }
    if (problem || !fh || !identity) {
      await fh?.close().catch(() => undefined);
      unpin();
      await this.evict(digest, identity, problem ?? 'cannot be opened');
      return undefined;
    }
    this.cache.served(digest);
    return this.opened(digest, fh, identity, size, unpin);
  }

  /** Why the open file cannot be served as the blob, or undefined when it can. */
  private async check(digest: string, fh: FileHandle, identity: FileIdentity, size: number): Promise<string | undefined> {
    if (identity.size !== size) return `has ${identity.size} bytes, expected ${size}`;
    let verified = this.cache.verified(digest);
    if (!verified) {
      let verifying = this.verifying.get(digest);
      if (!verifying) {
        verifying = this.verify(digest, fh, identity).finally(() => this.verifying.delete(digest));
        this.verifying.set(digest, verifying);
      }
      const problem = await verifying;
      if (problem) return problem;
      verified = this.cache.verified(digest);
    }
    if (!verified || !sameFile(verified, identity)) return 'changed on disk since it was verified';
    return undefined;
  }

  /** Hashes a file found on disk at start in full; marks it verified when it matches. */
  private async verify(digest: string, fh: FileHandle, identity: FileIdentity): Promise<string | undefined> {
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(Math.min(VERIFY_CHUNK, Math.max(1, identity.size)));
    for (let pos = 0; pos < identity.size;) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, identity.size - pos), pos);
      if (bytesRead === 0) return `ended at byte ${pos}, expected ${identity.size}`;
      hash.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    if (`sha256:${hash.digest('hex')}` !== digest) return 'does not match its digest';
    const after = fileIdentity(await fh.stat());
    if (!sameFile(after, identity)) return 'changed on disk while it was verified';
    this.cache.markVerified(digest, identity);
    return undefined;
  }

  private opened(digest: string, fh: FileHandle, identity: FileIdentity, size: number, unpin: () => void): OpenedBlob {
    let readers = 0;
    let released = false;
    const closeWhenIdle = () => {
      if (released && readers === 0) void fh.close().catch(() => undefined);
    };
    /** Positional reads of bytes [start, end]; a whole-blob read hashes them and checks the digest before the last byte goes out. */
    const reader = (start: number, end: number) => {
      const hash = start === 0 && end === size - 1 ? createHash('sha256') : undefined;
      return async (buf: Buffer, len: number, pos: number): Promise<number> => {
        const { bytesRead } = await fh.read(buf, 0, len, pos);
        if (bytesRead === 0) throw new CachedBlobCorruptError(digest, `ended at byte ${pos}, expected ${size}`);
        if (hash) {
          hash.update(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead));
          if (pos + bytesRead === size && `sha256:${hash.digest('hex')}` !== digest)
            throw new CachedBlobCorruptError(digest, 'does not match its digest');
        }
        return bytesRead;
      };
    };
    const failed = async (err: unknown): Promise<never> => {
      if (err instanceof CachedBlobCorruptError) await this.evict(digest, identity, err.reason);
      throw err;
    };
    return {
      size,
      source: 'cache',
      // Verified when it was committed (and its identity checked on open).
      drain: () => Promise.resolve(),
      read: (range?: ByteRange): Readable => {
        readers++;
        const start = range?.start ?? 0;
        const end = range?.end ?? size - 1;
        const readAt = reader(start, end);
        async function* chunks(): AsyncGenerator<Buffer> {
          try {
            for (let pos = start; pos <= end;) {
              const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, end + 1 - pos));
              const n = await readAt(buf, buf.length, pos).catch(failed);
              pos += n;
              yield n === buf.length ? buf : buf.subarray(0, n);
            }
          } finally {
            readers--;
            closeWhenIdle();
          }
        }
        return Readable.from(chunks(), { objectMode: false, highWaterMark: READ_CHUNK });
      },
      copyTo: async (dest: Writable, range?: ByteRange): Promise<void> => {
        readers++;
        try {
          const start = range?.start ?? 0;
          await pooledCopy(reader(start, range?.end ?? size - 1), start, range?.end ?? size - 1, dest, (n) =>
            this.onServed?.('cache', n),
          ).catch(failed);
        } finally {
          readers--;
          closeWhenIdle();
        }
      },
      release: () => {
        if (released) return;
        released = true;
        unpin();
        closeWhenIdle();
      },
    };
  }

  /** Evicts a blob whose file failed a check; logs once per file (concurrent readers find the same). */
  private async evict(digest: string, identity: FileIdentity | undefined, reason: string): Promise<void> {
    if (await this.cache.discardCorrupt(digest, identity, reason)) {
      this.logger.warn({ msg: `cached file ${reason}; evicted, the next request fetches it again`, digest, reason });
    }
  }
}
