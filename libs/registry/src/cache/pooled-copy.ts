import type { Writable } from 'node:stream';

/** Reads up to `length` bytes at `position` into `buffer`; resolves with the count (0 = nothing more). */
export type ReadAt = (buffer: Buffer, length: number, position: number) => Promise<number>;

const CHUNK = 1024 * 1024;

/**
 * Copies bytes [start, end] into `dest` through two reused buffers: a buffer is refilled only once
 * its previous write has completed, so serving a 1 GB blob allocates 2 MiB, not 1 GB of garbage
 * waiting for the GC (which is what keeps a streaming server's RSS flat). Backpressure comes free:
 * nothing is read until the destination has taken the previous chunk.
 */
export async function pooledCopy(readAt: ReadAt, start: number, end: number, dest: Writable, onBytes?: (n: number) => void): Promise<void> {
  const size = Math.min(CHUNK, Math.max(1, end - start + 1));
  const buffers = [Buffer.allocUnsafe(size), Buffer.allocUnsafe(size)];
  const writes: (Promise<void> | undefined)[] = [undefined, undefined];
  let pos = start;
  let i = 0;
  try {
    while (pos <= end) {
      await writes[i];
      if (dest.destroyed) throw new Error('destination closed');
      const n = await readAt(buffers[i], Math.min(size, end + 1 - pos), pos);
      if (n <= 0) throw new Error(`source ended at byte ${pos}, expected ${end + 1}`);
      const chunk = n === size ? buffers[i] : buffers[i].subarray(0, n);
      writes[i] = new Promise<void>((resolve, reject) => dest.write(chunk, (err) => (err ? reject(err) : resolve())));
      writes[i]!.catch(() => undefined);
      onBytes?.(n);
      pos += n;
      i ^= 1;
    }
    await Promise.all(writes);
  } finally {
    await Promise.allSettled(writes);
  }
}
