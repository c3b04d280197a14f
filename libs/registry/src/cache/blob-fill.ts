import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable, type Writable } from 'node:stream';
import { pooledCopy } from './pooled-copy.js';
import { Logger } from '@nestjs/common';
import type { ByteRange } from '../oci/byte-range.js';
import { BadOriginResponseError, DigestMismatchError } from '../oci/oci.errors.js';
import type { BlobFetcher, BlobRequest, FillTarget, StoredUntil } from '../sources/blob-source.js';
import type { BlobCache } from './blob-cache.js';

export interface BlobFillOptions {
  /** A fetcher whose stream delivers nothing for this long is abandoned for the next one, ms. */
  stallTimeoutMs: number;
  /**
   * Below this receive rate (bytes/s, from fetchers that report one) a quiet fetcher counts as
   * stalled; at or above it the fill keeps waiting. 0 = any flow keeps it alive.
   */
  stallMinRate?: number;
  /** Called with every chunk a fetcher delivered (metrics). */
  onBytes?: (source: string, n: number) => void;
}

const READ_CHUNK = 256 * 1024;
/** Bytes read back per step when hashing what an in-place fetcher stored. */
const STORED_READ = 1024 * 1024;
/** How long an abandoned in-place fetcher may take to stop writing before the next one starts anyway. */
const STOP_TIMEOUT_MS = 10_000;

/**
 * One blob being produced into the cache: a temp file written sequentially by a list of fetchers
 * (switching to the next one mid-blob, from the byte already written, when one fails or stalls),
 * hashed as it grows, and tailed by any number of readers as bytes arrive. The final byte is only
 * released once the whole blob's sha256 matched, so a client never receives a complete wrong blob;
 * on a mismatch the file is discarded and every reader's stream errors.
 */
export class BlobFill {
  private readonly logger = new Logger(BlobFill.name);
  private readonly hash = createHash('sha256');
  private readonly waiters = new Set<() => void>();
  private readonly segments: { end: number; source: string }[] = [];
  private fd: FileHandle | undefined;
  private storedBuf: Buffer | undefined;
  private refs = 1;
  private state: 'filling' | 'done' | 'failed' = 'filling';
  private failure: Error | undefined;
  private resolveSize!: (size: number) => void;
  private rejectSize!: (err: Error) => void;
  size: number | undefined;
  written = 0;
  /** Resolves with the blob size as soon as it is known; rejects if the fill fails before. */
  readonly sized: Promise<number>;
  /** Settles when the blob is verified and in the cache (or rejects with the failure). */
  readonly done: Promise<void>;

  constructor(
    private readonly cache: BlobCache,
    private readonly request: BlobRequest,
    private readonly fetchers: readonly BlobFetcher[],
    private readonly options: BlobFillOptions,
  ) {
    this.sized = new Promise<number>((res, rej) => {
      this.resolveSize = res;
      this.rejectSize = rej;
    });
    this.sized.catch(() => undefined);
    if (request.size !== undefined) this.setSize(request.size);
    this.done = this.run();
    this.done.catch(() => undefined);
  }

  get failed(): Error | undefined {
    return this.failure;
  }

  /** True while bytes are still being produced (a new request may join). */
  get filling(): boolean {
    return this.state === 'filling';
  }

  /** Takes one more reference for a request that joins this fill. */
  retain(): void {
    this.refs++;
  }

  /** Fetcher that produced the byte at `pos` (for "bytes served by source"). */
  sourceAt(pos: number): string {
    return this.segments.find((s) => pos < s.end)?.source ?? this.segments.at(-1)?.source ?? 'origin';
  }

  /** A stream of bytes [start, end] that follows the file as it grows. Holds the fill open until it ends. */
  read(range: ByteRange | undefined, onBytes?: (source: string, n: number) => void): Readable {
    this.refs++;
    let pos = range?.start ?? 0;
    const end = range?.end ?? (this.size ?? 0) - 1;
    let released = false;
    const release = () => {
      if (!released) {
        released = true;
        this.unref();
      }
    };
    const stream: Readable = new Readable({
      highWaterMark: READ_CHUNK,
      read: () => {
        if (pos > end) {
          release();
          stream.push(null);
          return;
        }
        const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, end + 1 - pos));
        this.readAt(buf, buf.length, pos, onBytes).then(
          (n) => {
            pos += n;
            stream.push(n === buf.length ? buf : buf.subarray(0, n));
          },
          (err: Error) => stream.destroy(err),
        );
      },
      destroy(err, cb) {
        release();
        cb(err);
      },
    });
    return stream;
  }

  /** Pooled-buffer copy of bytes [start, end] into `dest` as they arrive (see pooledCopy). */
  async copyTo(dest: Writable, range: ByteRange | undefined, onBytes?: (source: string, n: number) => void): Promise<void> {
    this.refs++;
    try {
      await pooledCopy((buf, len, pos) => this.readAt(buf, len, pos, onBytes), range?.start ?? 0, range?.end ?? (this.size ?? 0) - 1, dest);
    } finally {
      this.unref();
    }
  }

  /**
   * Reads up to `length` bytes at `position` once they are written (and, for the final byte, once
   * the whole blob is verified); throws the fill's failure.
   */
  async readAt(buffer: Buffer, length: number, position: number, onBytes?: (source: string, n: number) => void): Promise<number> {
    const size = this.size ?? 0;
    for (;;) {
      if (this.failure) throw this.failure;
      const available = this.state === 'done' ? size : Math.min(this.written, size - 1);
      if (position < available) {
        const { bytesRead } = await this.fd!.read(buffer, 0, Math.min(length, available - position), position);
        if (bytesRead === 0) throw new Error('cache file shorter than written');
        onBytes?.(this.sourceAt(position), bytesRead);
        return bytesRead;
      }
      await this.progress();
    }
  }

  /** Drops the creator's reference (the fill itself keeps running until done). */
  release(): void {
    this.unref();
  }

  private unref(): void {
    this.refs--;
    if (this.refs <= 0 && this.state !== 'filling') void this.closeFd();
  }

  private async closeFd(): Promise<void> {
    const fd = this.fd;
    this.fd = undefined;
    await fd?.close().catch(() => undefined);
  }

  private progress(): Promise<void> {
    return new Promise((res) => this.waiters.add(res));
  }

  private notify(): void {
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const w of waiting) w();
  }

  private setSize(size: number): void {
    if (this.size !== undefined) return;
    this.size = size;
    this.resolveSize(size);
  }

  private async run(): Promise<void> {
    const unpin = this.cache.pin(this.request.digest);
    let temp: string | undefined;
    try {
      temp = await this.cache.tempFileInOwnDir(this.request.digest);
      this.fd = await open(temp, 'w+');
      let lastError: Error | undefined;
      for (const fetcher of this.fetchers) {
        if (this.size !== undefined && this.written >= this.size) break;
        try {
          await this.fillFrom(fetcher, { path: temp });
        } catch (err) {
          lastError = err as Error;
          this.logger.warn(`${this.request.digest}: ${fetcher.name} stopped at byte ${this.written}: ${lastError.message}`);
        }
      }
      if (this.size === undefined || this.written !== this.size) {
        throw lastError ?? new BadOriginResponseError(`no source could serve ${this.request.digest}`);
      }
      const actual = `sha256:${this.hash.digest('hex')}`;
      if (actual !== this.request.digest) throw new DigestMismatchError(this.request.digest, actual);
      await this.cache.commitVerified(this.request.digest, temp);
      this.state = 'done';
      await this.cache.removeTempDir(temp).catch(() => undefined);
    } catch (err) {
      // The temp file goes before readers learn of the failure, so nothing half-made outlives it.
      if (temp) await this.cache.removeTempDir(temp).catch(() => undefined);
      this.failure = err as Error;
      this.state = 'failed';
      this.rejectSize(this.failure);
      if (err instanceof DigestMismatchError) this.logger.error(`${err.message}: discarded, readers aborted`);
      throw err;
    } finally {
      unpin();
      this.storedBuf = undefined;
      this.notify();
      if (this.refs <= 0) await this.closeFd();
    }
  }

  /** Fills from `fetcher` at `written` on; `target` is the temp file (`tmp/<random>.part/<hex>`). */
  private async fillFrom(fetcher: BlobFetcher, target: FillTarget): Promise<void> {
    const ac = new AbortController();
    const fetched = await fetcher.fetch(this.request, this.written, ac.signal, target);
    if (!fetched) return;
    const { stream, size, received, joining } = fetched;
    if (this.size === undefined) {
      await this.cache.ensureRoom(size);
      this.setSize(size);
    } else if (size !== this.size) {
      const err = new BadOriginResponseError(`${fetcher.name} reports size ${size}, expected ${this.size}`);
      ac.abort(err);
      stream.destroy();
      throw err;
    }
    const total = this.size!;
    let timer: NodeJS.Timeout | undefined;
    let receivedAtArm = received?.() ?? 0;
    const arm = () => {
      clearTimeout(timer);
      receivedAtArm = received?.() ?? 0;
      timer = setTimeout(() => {
        // A swarm download still waiting to be unchoked is not stalled (the fetcher bounds this).
        if (joining?.()) return arm();
        // Quiet output but bytes still flowing underneath (pieces being assembled) is no stall:
        // judged on the average over the whole window, not a momentary rate.
        if (received) {
          const rate = (received() - receivedAtArm) / (this.options.stallTimeoutMs / 1000);
          if (rate > 0 && rate >= (this.options.stallMinRate ?? 0)) return arm();
        }
        const err = new Error(`no data for ${this.options.stallTimeoutMs} ms`);
        ac.abort(err);
        stream.destroy(err);
      }, this.options.stallTimeoutMs);
    };
    // Abandoning must not depend on the fetcher's stream honouring destroy(): a stream whose
    // destroy waits on the very read that stalled (e.g. Readable.from over an async generator)
    // would otherwise hold this loop, and every client reading the blob, forever.
    const abandoned = new Promise<never>((_, rej) => ac.signal.addEventListener('abort', () => rej(ac.signal.reason as Error), { once: true }));
    abandoned.catch(() => undefined);
    const chunks = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    arm();
    try {
      for (;;) {
        const pending = chunks.next();
        pending.catch(() => undefined);
        const next = await Promise.race([pending, abandoned]);
        if (next.done) break;
        const chunk = next.value as Buffer | StoredUntil;
        arm();
        if (Buffer.isBuffer(chunk)) await this.writeChunk(fetcher.name, chunk, total);
        else await this.hashStored(fetcher.name, chunk.storedUntil, total);
      }
      if (this.written < total) throw new Error(`${fetcher.name} ended at byte ${this.written} of ${total}`);
    } catch (err) {
      // Tell the fetcher it is abandoned (it may hold a download to clean up), and let one that
      // writes into the file itself stop before the next fetcher writes the same range.
      if (!ac.signal.aborted) ac.abort(err);
      if (fetched.stop) await boundedStop(fetched.stop(), fetcher.name, this.logger);
      throw err;
    } finally {
      clearTimeout(timer);
      stream.destroy();
    }
  }

  private async writeChunk(source: string, chunk: Buffer, total: number): Promise<void> {
    if (this.written + chunk.length > total) throw new BadOriginResponseError(`${source} sent more than ${total} bytes`);
    let off = 0;
    while (off < chunk.length) off += (await this.fd!.write(chunk, off, chunk.length - off, this.written + off)).bytesWritten;
    this.hash.update(chunk);
    this.advance(source, chunk.length);
  }

  /** Bytes an in-place fetcher says are now in the file up to `until`: read back and hashed, not written. */
  private async hashStored(source: string, until: number, total: number): Promise<void> {
    if (!Number.isSafeInteger(until) || until < this.written || until > total) {
      throw new BadOriginResponseError(`${source} reported bytes stored up to ${until}, outside ${this.written}–${total}`);
    }
    const buf = (this.storedBuf ??= Buffer.allocUnsafe(STORED_READ));
    while (this.written < until) {
      const { bytesRead } = await this.fd!.read(buf, 0, Math.min(buf.length, until - this.written), this.written);
      if (bytesRead === 0) throw new Error(`${source} reported byte ${this.written} stored, but the file ends there`);
      this.hash.update(buf.subarray(0, bytesRead));
      this.advance(source, bytesRead);
    }
  }

  private advance(source: string, n: number): void {
    this.written += n;
    const last = this.segments.at(-1);
    if (last?.source === source) last.end = this.written;
    else this.segments.push({ end: this.written, source });
    this.options.onBytes?.(source, n);
    this.notify();
  }
}

/** Waits for an abandoned fetcher to stop writing, at most STOP_TIMEOUT_MS (then goes on, logged). */
async function boundedStop(stopping: Promise<void>, source: string, logger: Logger): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), STOP_TIMEOUT_MS)));
  try {
    const outcome = await Promise.race([stopping.then(() => 'stopped' as const, () => 'stopped' as const), late]);
    if (outcome === 'late') logger.warn(`${source} did not stop within ${STOP_TIMEOUT_MS} ms; continuing`);
  } finally {
    clearTimeout(timer);
  }
}
