import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { DestinationClosedError, pooledCopy, pooledCopyBytesInUse, type ReadAt } from './pooled-copy.js';

const source = randomBytes(8 * 1024 * 1024 + 5);
const readAt: ReadAt = (buf, len, pos) => Promise.resolve(source.copy(buf, 0, pos, Math.min(pos + len, source.length)));

/** A client that reads nothing: every write stays pending (until destroyed). */
class StalledSink extends Writable {
  private pending: ((err?: Error | null) => void) | undefined;
  override _write(_chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.pending = cb;
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.pending?.(new Error('destroyed'));
    cb(err);
  }
}

class Sink extends Writable {
  readonly parts: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.parts.push(Buffer.from(chunk));
    setImmediate(cb);
  }
}

describe(pooledCopy.name, () => {
  const sinks: Writable[] = [];
  afterEach(() => {
    for (const s of sinks.splice(0)) s.destroy();
  });

  it('copies exactly bytes [start, end]', async () => {
    const sink = new Sink();
    await pooledCopy(readAt, 3, source.length - 2, sink);
    expect(Buffer.concat(sink.parts).equals(source.subarray(3, source.length - 1))).toBe(true);
    expect(pooledCopyBytesInUse()).toBe(0);
  });

  it('holds one chunk per client that reads nothing, and 64 KiB chunks once copies hold 32 MiB (issue #12 item 8)', async () => {
    const copies: Promise<void>[] = [];
    for (let i = 0; i < 100; i++) {
      const sink = new StalledSink();
      sinks.push(sink);
      const copy = pooledCopy(readAt, 0, source.length - 1, sink);
      copy.catch(() => undefined);
      copies.push(copy);
    }
    // Settled: every copy has handed its sink something and is waiting for it.
    await expect.poll(() => sinks.every((s) => s.writableLength > 0)).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    const waiting = sinks.reduce((n, s) => n + s.writableLength, 0);
    // Two reused 1 MiB buffers per response held 200 MiB here; one chunk each, small beyond the budget, holds < 40 MiB.
    expect(waiting).toBeLessThan(40 * 1024 * 1024);
    expect(Math.max(...sinks.map((s) => s.writableLength))).toBeLessThanOrEqual(1024 * 1024);
    for (const s of sinks.splice(0)) s.destroy();
    for (const copy of copies) await expect(copy).rejects.toBeInstanceOf(DestinationClosedError);
    expect(pooledCopyBytesInUse()).toBe(0);
  });

  it('rejects with DestinationClosedError when the destination closes mid-copy', async () => {
    const sink = new Sink();
    const copy = pooledCopy(readAt, 0, source.length - 1, sink);
    await expect.poll(() => sink.parts.length).toBeGreaterThan(0);
    sink.destroy();
    await expect(copy).rejects.toBeInstanceOf(DestinationClosedError);
  });
});
