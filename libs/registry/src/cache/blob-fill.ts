import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable, type Writable } from 'node:stream';
import { pooledCopy } from './pooled-copy.js';
import { Logger } from '@nestjs/common';
import { durationMs, systemClock, type Clock, type ClockTimer } from '#ops';
import type { ByteRange } from '../oci/byte-range.js';
import { BadOriginResponseError, DigestMismatchError } from '../oci/oci.errors.js';
import type { BlobFetcher, BlobRequest, FillObserver, FillTarget, StoredUntil } from '../sources/blob-source.js';
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
  /** Called when a fetcher failed or stalled and the fill moved on to the next, if any (metrics: swarm → origin fallbacks). */
  onFetcherFailed?: (fetcher: string) => void;
  /** Called once per fill once its size is known; the observer sees every byte of the blob in order, exactly once
   *  (written chunks and StoredUntil bytes alike), synchronously, before the blob is committed. The proxy computes piece SHA-1s this way. */
  observe?: (request: BlobRequest, size: number) => FillObserver | undefined;
  /** Time for the stall, flush and stop timers (default: the system's; a manual one in specs). */
  clock?: Clock;
}

const READ_CHUNK = 256 * 1024;
/**
 * Size of a write buffer (two per fill, one filling while the other is written) and of a read-back
 * step: one syscall per MiB instead of one per network chunk.
 */
const BUFFER = 1024 * 1024;
/** Buffers kept for the next fills, so a fill allocates none in steady state. */
const POOL_MAX = 8;
/**
 * A partial write buffer goes to disk once the source has been quiet this long, so readers tailing
 * a slow source are not held back waiting for a full MiB; at speed the buffer fills first.
 */
const FLUSH_DELAY_MS = 10;
/** How long an abandoned in-place fetcher may take to stop writing before the next one starts anyway. */
const STOP_TIMEOUT_MS = 10_000;

const pool: Buffer[] = [];
const takeBuffer = (): Buffer => pool.pop() ?? Buffer.allocUnsafeSlow(BUFFER);
const giveBuffer = (buf: Buffer | undefined): void => {
  if (buf && pool.length < POOL_MAX) pool.push(buf);
};

/**
 * One blob being produced into the cache: a temp file written sequentially by a list of fetchers
 * (switching to the next one mid-blob, from the byte already reached, when one fails or stalls),
 * hashed as it grows, and tailed by any number of readers as bytes reach the disk. The final byte
 * is only released once the whole blob's sha256 matched, so a client never receives a complete
 * wrong blob; on a mismatch the file is discarded and every reader's stream errors.
 *
 * Incoming chunks are hashed on arrival and copied into one of two pooled MiB buffers, written
 * positionally when full (or when the source goes quiet) while the other fills: at most one write
 * in flight, none awaited per chunk.
 */
export class BlobFill {
  private readonly logger = new Logger(BlobFill.name);
  private readonly hash = createHash('sha256');
  private readonly waiters = new Set<() => void>();
  private readonly segments: { end: number; source: string }[] = [];
  private readonly clock: Clock;
  private fd: FileHandle | undefined;
  /** Bytes accepted (hashed, observed): on disk or in `buf`. */
  private pos = 0;
  /** The buffer filling: its first `bufLen` bytes go at `bufAt`; `spare` is the other one (maybe being written). */
  private buf: Buffer | undefined;
  private spare: Buffer | undefined;
  private bufLen = 0;
  private bufAt = 0;
  /** The write in flight; it rejects on a write failure. */
  private writing: Promise<void> | undefined;
  /** Wakes the fill loop waiting for its source (a write finished, a flush is due). */
  private rouse: (() => void) | undefined;
  /**
   * A failure no other fetcher can repair: bytes hashed but not stored (a write failed), or the
   * observer threw. The fill fails at once.
   */
  private fatal: Error | undefined;
  private observer: FillObserver | undefined;
  private observing = false;
  private refs = 1;
  private state: 'filling' | 'done' | 'failed' = 'filling';
  private failure: Error | undefined;
  private resolveSize!: (size: number) => void;
  private rejectSize!: (err: Error) => void;
  size: number | undefined;
  /** Bytes on disk, what readers may read (all but the last until verified). */
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
    this.clock = options.clock ?? systemClock;
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
          (err: unknown) => stream.destroy(err as Error),
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
        const { bytesRead } = await this.file().read(buffer, 0, Math.min(length, available - position), position);
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
    if (this.waiters.size === 0) return;
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
    const started = performance.now();
    let temp: string | undefined;
    try {
      temp = await this.cache.tempFileInOwnDir(this.request.digest);
      this.fd = await open(temp, 'w+');
      let lastError: Error | undefined;
      for (const fetcher of this.fetchers) {
        if (this.size !== undefined && this.pos >= this.size) break;
        try {
          await this.fillFrom(fetcher, { path: temp });
        } catch (err) {
          if (this.fatal) throw this.fatal;
          lastError = err as Error;
          this.options.onFetcherFailed?.(fetcher.name);
          this.logger.warn({
            msg: 'fetcher stopped; the next one continues',
            digest: this.request.digest,
            source: fetcher.name,
            bytes: this.pos,
            reason: lastError.message,
          });
        }
      }
      if (this.size === undefined || this.written !== this.size) {
        throw lastError ?? new BadOriginResponseError(`no source could serve ${this.request.digest}`);
      }
      const actual = `sha256:${this.hash.digest('hex')}`;
      if (actual !== this.request.digest) throw new DigestMismatchError(this.request.digest, actual);
      await this.cache.commitVerified(this.request.digest, temp);
      const source = [...new Set(this.segments.map((s) => s.source))].join('+');
      this.logger.log({
        msg: 'fill complete',
        digest: this.request.digest,
        repo: this.request.repository,
        bytes: this.size,
        source,
        durationMs: durationMs(performance.now() - started),
      });
      this.state = 'done';
      this.tellObserver((o) => o.committed?.());
      await this.cache.removeTempDir(temp).catch(() => undefined);
    } catch (err) {
      // The temp file goes before readers learn of the failure, so nothing half-made outlives it.
      if (temp) await this.cache.removeTempDir(temp).catch(() => undefined);
      const failure = err as Error;
      this.failure = failure;
      this.state = 'failed';
      this.rejectSize(failure);
      this.tellObserver((o) => o.failed?.(failure));
      if (err instanceof DigestMismatchError)
        this.logger.error({ msg: 'fill discarded, readers aborted', digest: this.request.digest, reason: err.message });
      throw err;
    } finally {
      unpin();
      await this.writing?.catch(() => undefined);
      giveBuffer(this.buf);
      giveBuffer(this.spare);
      this.buf = this.spare = undefined;
      this.observer = undefined;
      this.notify();
      if (this.refs <= 0) await this.closeFd();
    }
  }

  /** Fills from `fetcher` at `pos` on; `target` is the temp file (`tmp/<random>.part/<hex>`). */
  private async fillFrom(fetcher: BlobFetcher, target: FillTarget): Promise<void> {
    const ac = new AbortController();
    const fetched = await fetcher.fetch(this.request, this.pos, ac.signal, target);
    if (!fetched) return;
    const { stream, size, received, joining } = fetched;
    const minRate = fetched.stallMinRate ?? this.options.stallMinRate ?? 0;
    if (this.size === undefined) {
      await this.cache.ensureRoom(size);
      this.setSize(size);
    } else if (size !== this.size) {
      const err = new BadOriginResponseError(`${fetcher.name} reports size ${size}, expected ${this.size}`);
      ac.abort(err);
      stream.destroy();
      throw err;
    }
    // Either just set from `size`, or equal to it (checked above).
    const total = size;
    const source = fetcher.name;
    let receivedAtArm = received?.() ?? 0;
    const stalled = () => {
      // A swarm download still waiting to be unchoked is not stalled (the fetcher bounds this).
      if (joining?.()) {
        arm();
        return;
      }
      // Quiet output but bytes still flowing underneath (pieces being assembled) is no stall:
      // judged on the average over the whole window, not a momentary rate.
      if (received) {
        const rate = (received() - receivedAtArm) / (this.options.stallTimeoutMs / 1000);
        if (rate > 0 && rate >= minRate) {
          arm();
          return;
        }
      }
      const err = new Error(`no data for ${this.options.stallTimeoutMs} ms`);
      ac.abort(err);
      stream.destroy(err);
    };
    const timer = this.clock.setTimeout(stalled, this.options.stallTimeoutMs);
    const arm = () => {
      receivedAtArm = received?.() ?? 0;
      timer.refresh();
    };
    // The loop pulls with read() and, only when nothing is buffered, waits on a settle function
    // replaced at every wait, which the stream's events, finished writes and the abort call: no
    // promise or listener lives longer than its wait, so nothing keeps a chunk alive (a race
    // against a promise settled only at the end did: it held every chunk until the fill ended).
    // Abandoning must not depend on the fetcher's stream honouring destroy(): a stream whose
    // destroy waits on the very read that stalled (e.g. Readable.from over an async generator)
    // would otherwise hold this loop, and every client reading the blob, forever.
    let wake: (() => void) | undefined;
    const rouse = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    let streamError: Error | undefined;
    let flushTimer: ClockTimer | undefined;
    // Set by the flush timer: typed wide so TS does not narrow it to `false` in the loop.
    let flushDue = false as boolean;
    const flushSoon = () => {
      flushTimer = undefined;
      flushDue = true;
      rouse();
    };
    this.rouse = rouse;
    stream
      .on('readable', rouse)
      .on('end', rouse)
      .on('close', rouse)
      .on('error', (err: Error) => {
        streamError ??= err;
        rouse();
      });
    ac.signal.addEventListener('abort', rouse, { once: true });
    try {
      if (!this.observing) {
        this.observing = true;
        this.observer = this.guard(() => this.options.observe?.(this.request, total));
      }
      for (;;) {
        if (ac.signal.aborted) throw ac.signal.reason as Error;
        const item = stream.destroyed ? null : (stream.read() as Buffer | StoredUntil | null);
        if (item !== null) {
          arm();
          if (Buffer.isBuffer(item)) {
            if (this.pos + item.length > total) throw new BadOriginResponseError(`${source} sent more than ${total} bytes`);
            this.accept(source, item);
            let off = this.copyIn(item, 0);
            while (this.bufLen === BUFFER) {
              await this.flush();
              if (off < item.length) off = this.copyIn(item, off);
            }
          } else {
            await this.takeStored(source, item, total);
          }
          continue;
        }
        const failed = streamError ?? stream.errored;
        if (failed) throw failed;
        if (stream.readableEnded) break;
        if (stream.destroyed) throw new Error(`${source} closed its stream at byte ${this.pos} of ${total}`);
        if (this.bufLen > 0) {
          if (flushDue && !this.writing) {
            flushDue = false;
            this.startWrite();
          } else flushTimer ??= this.clock.setTimeout(flushSoon, FLUSH_DELAY_MS);
        }
        await new Promise<void>((resolve) => (wake = resolve));
      }
      await this.drain();
      if (this.pos < total) throw new Error(`${source} ended at byte ${this.pos} of ${total}`);
    } catch (err) {
      // Tell the fetcher it is abandoned (it may hold a download to clean up), and let one that
      // writes into the file itself stop before the next fetcher writes the same range.
      if (!ac.signal.aborted) ac.abort(err);
      // What was hashed goes to disk before the next fetcher continues after it.
      await this.drain().catch(() => undefined);
      if (fetched.stop) await boundedStop(this.clock, fetched.stop(), source, this.request.digest, this.logger);
      throw err;
    } finally {
      this.clock.clearTimeout(timer);
      this.clock.clearTimeout(flushTimer);
      this.rouse = undefined;
      ac.signal.removeEventListener('abort', rouse);
      stream.off('readable', rouse).off('end', rouse).off('close', rouse);
      stream.destroy();
    }
  }

  /** Takes `chunk` as the blob's next bytes: hashed, shown to the observer, counted. */
  private accept(source: string, chunk: Buffer): void {
    this.hash.update(chunk);
    if (this.observer) {
      const observer = this.observer;
      this.guard(() => observer.data(chunk));
    }
    this.pos += chunk.length;
    const last = this.segments.at(-1);
    if (last?.source === source) last.end = this.pos;
    else this.segments.push({ end: this.pos, source });
    this.options.onBytes?.(source, chunk.length);
  }

  /** Runs observer code; an observer that throws fails the fill (it would miss bytes otherwise). */
  private guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      this.fatal ??= err as Error;
      throw err;
    }
  }

  private tellObserver(fn: (observer: FillObserver) => void): void {
    if (!this.observer) return;
    try {
      fn(this.observer);
    } catch (err) {
      this.logger.warn({ msg: 'fill observer failed', digest: this.request.digest, reason: (err as Error).message });
    }
  }

  /** Copies what fits of `chunk` from `off` into the filling buffer; returns the offset reached. */
  private copyIn(chunk: Buffer, off: number): number {
    const buf = (this.buf ??= takeBuffer());
    const n = chunk.copy(buf, this.bufLen, off);
    this.bufLen += n;
    return off + n;
  }

  /** Writes the filling buffer once the write in flight is done; does not wait for this one. */
  private async flush(): Promise<void> {
    if (this.writing) await this.writing;
    this.startWrite();
  }

  /** Everything accepted on disk (`written === pos`). */
  private async drain(): Promise<void> {
    await this.flush();
    await this.writing;
  }

  /** The open cache file: every caller runs after the fill opened it. */
  private file(): FileHandle {
    if (!this.fd) throw new Error('internal: cache file not open');
    return this.fd;
  }

  private startWrite(): void {
    if (this.bufLen === 0) return;
    const buf = this.buf;
    if (!buf) throw new Error('internal: bytes counted in a buffer that does not exist');
    const len = this.bufLen;
    this.buf = this.spare;
    this.spare = buf;
    this.bufLen = 0;
    const writing = this.writeOut(buf, len, this.bufAt);
    this.bufAt += len;
    writing.catch(() => undefined);
    this.writing = writing;
  }

  private async writeOut(buf: Buffer, len: number, at: number): Promise<void> {
    try {
      let off = 0;
      while (off < len) off += (await this.file().write(buf, off, len - off, at + off)).bytesWritten;
    } catch (err) {
      this.fatal ??= err as Error;
      throw err;
    }
    this.writing = undefined;
    this.written = at + len;
    this.notify();
    this.rouse?.();
  }

  /** Bytes an in-place fetcher says are now in the file up to `storedUntil`: hashed from its chunks, or read back; not written. */
  private async takeStored(source: string, mark: StoredUntil, total: number): Promise<void> {
    const until = mark.storedUntil;
    if (!Number.isSafeInteger(until) || until < this.pos || until > total) {
      throw new BadOriginResponseError(`${source} reported bytes stored up to ${until}, outside ${this.pos}–${total}`);
    }
    // Readers may read up to `written` only: the bytes buffered before the mark go to disk first.
    if (this.bufLen > 0 || this.writing) await this.drain();
    const chunks = mark.chunks;
    if (chunks && chunks.reduce((n, c) => n + c.length, 0) === until - this.pos) {
      for (const chunk of chunks) this.accept(source, chunk);
      this.written = this.bufAt = until;
      this.notify();
      return;
    }
    const buf = takeBuffer();
    try {
      while (this.pos < until) {
        const { bytesRead } = await this.file().read(buf, 0, Math.min(buf.length, until - this.pos), this.pos);
        if (bytesRead === 0) throw new Error(`${source} reported byte ${this.pos} stored, but the file ends there`);
        this.accept(source, buf.subarray(0, bytesRead));
        this.written = this.bufAt = this.pos;
        this.notify();
      }
    } finally {
      giveBuffer(buf);
    }
  }
}

/** Waits for an abandoned fetcher to stop writing, at most STOP_TIMEOUT_MS (then goes on, logged). */
async function boundedStop(clock: Clock, stopping: Promise<void>, source: string, digest: string, logger: Logger): Promise<void> {
  let timer: ClockTimer | undefined;
  const late = new Promise<'late'>((resolve) => (timer = clock.setTimeout(() => resolve('late'), STOP_TIMEOUT_MS)));
  try {
    const outcome = await Promise.race([
      stopping.then(
        () => 'stopped' as const,
        () => 'stopped' as const,
      ),
      late,
    ]);
    if (outcome === 'late') logger.warn({ msg: `fetcher did not stop within ${STOP_TIMEOUT_MS} ms; continuing`, digest, source });
  } finally {
    clock.clearTimeout(timer);
  }
}
