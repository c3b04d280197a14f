import type { Writable } from 'node:stream';

/** Reads up to `length` bytes at `position` into `buffer`; resolves with the count (0 = nothing more). */
export type ReadAt = (buffer: Buffer, length: number, position: number) => Promise<number>;

/** The destination closed or refused a write (the client went away or was cut): not a fault of the source. */
export class DestinationClosedError extends Error {
  constructor(cause?: Error) {
    super(cause ? `destination closed: ${cause.message}` : 'destination closed', { cause });
    this.name = 'DestinationClosedError';
  }
}

/** Chunk size while few responses hold buffers: one read and one write syscall per MiB. */
const LARGE = 1024 * 1024;
/** Chunk size once copies hold BUDGET bytes between them (many open responses, typically slow readers). */
const SMALL = 64 * 1024;
/**
 * Bytes of copy buffers in use (read into, or written and not yet accepted by the connection)
 * across all copies, above which new chunks are SMALL. A client that reads nothing pins the chunk
 * its connection has not accepted, so N stalled clients cost at most BUDGET + N × SMALL, not N × 2 MiB.
 */
const BUDGET = 32 * 1024 * 1024;
/** Free buffers kept for the next chunks, per size. */
const free = { large: [] as Buffer[], small: [] as Buffer[] };
const KEEP = { large: 8, small: 64 };
let inUse = 0;

function take(size: number): Buffer {
  inUse += size;
  return (size === LARGE ? free.large : free.small).pop() ?? Buffer.allocUnsafeSlow(size);
}

function give(buf: Buffer): void {
  inUse -= buf.length;
  const kind = buf.length === LARGE ? 'large' : 'small';
  if (free[kind].length < KEEP[kind]) free[kind].push(buf);
}

/** `dest.destroyed` read anew (it changes while the copy awaits). */
const closed = (dest: Writable): boolean => dest.destroyed;

/** Bytes of copy buffers held by copies in progress (for tests and the slow-reader bench). */
export function pooledCopyBytesInUse(): number {
  return inUse;
}

/**
 * Copies bytes [start, end] into `dest` through buffers from a shared pool, so serving a 1 GB blob
 * allocates no garbage waiting for the GC (which is what keeps a streaming server's RSS flat).
 * One chunk at a time: the next is read only once the connection has accepted the previous one
 * (its write callback), so a response holds one buffer, and a client that reads nothing holds one
 * buffer and no more, whatever the blob's size; the kernel's socket buffer keeps the wire busy while
 * the next chunk is read. Chunks are 1 MiB while copies hold less than 32 MiB in all, 64 KiB beyond.
 * Rejects with DestinationClosedError when `dest` closes or fails a write, or with what `readAt` threw.
 */
export async function pooledCopy(readAt: ReadAt, start: number, end: number, dest: Writable, onBytes?: (n: number) => void): Promise<void> {
  let pos = start;
  let accepted: Promise<void> | undefined;
  while (pos <= end) {
    if (accepted) await accepted;
    if (closed(dest)) throw new DestinationClosedError();
    const size = inUse + LARGE <= BUDGET && end + 1 - pos > SMALL ? LARGE : SMALL;
    const buf = take(size);
    let n: number;
    try {
      n = await readAt(buf, Math.min(size, end + 1 - pos), pos);
    } catch (err) {
      give(buf);
      throw err;
    }
    if (n <= 0) {
      give(buf);
      throw new Error(`source ended at byte ${pos}, expected ${end + 1}`);
    }
    if (closed(dest)) {
      give(buf);
      throw new DestinationClosedError();
    }
    accepted = new Promise<void>((resolve, reject) => {
      // The buffer goes back to the pool only once the connection is done with it (accepted or failed).
      dest.write(n === size ? buf : buf.subarray(0, n), (err) => {
        give(buf);
        if (err) reject(new DestinationClosedError(err));
        else resolve();
      });
    });
    accepted.catch(() => undefined);
    onBytes?.(n);
    pos += n;
  }
  await accepted;
}
