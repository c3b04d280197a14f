/**
 * Piece-sized buffers reused across pieces and torrents. A 4 MiB piece assembled into a fresh
 * zero-filled buffer each time (what webtorrent did) cost a fifth of the agent's CPU in allocation
 * and GC; here a buffer is taken, filled by the socket parser or a disk read, and given back once
 * its last writer (file write, socket write) is done with it.
 */
export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private freeBytes = 0;

  /** @param maxFreeBytes most bytes kept in free lists (beyond, returned buffers go to the GC). */
  constructor(private readonly maxFreeBytes = 64 * 1024 * 1024) {}

  /** A buffer of exactly `size` bytes with unspecified content. */
  take(size: number): Buffer {
    const list = this.free.get(size);
    const buf = list?.pop();
    if (buf) {
      this.freeBytes -= size;
      return buf;
    }
    return Buffer.allocUnsafeSlow(size);
  }

  /** Gives a buffer back; the caller must hold no other reference that still reads or writes it. */
  give(buf: Buffer): void {
    if (this.freeBytes + buf.length > this.maxFreeBytes) return;
    let list = this.free.get(buf.length);
    if (!list) this.free.set(buf.length, (list = []));
    list.push(buf);
    this.freeBytes += buf.length;
  }

  /** Drops every free buffer (idle process: give the memory back). */
  trim(): void {
    this.free.clear();
    this.freeBytes = 0;
  }
}

/** A pooled buffer shared by several users (a seeded piece sent to several peers): returned to the pool at refcount 0. */
export class SharedBuffer {
  private refs = 1;

  constructor(
    readonly buf: Buffer,
    private readonly pool: BufferPool,
  ) {}

  retain(): this {
    this.refs++;
    return this;
  }

  release(): void {
    if (--this.refs === 0) this.pool.give(this.buf);
  }
}
