/** Set bits per byte value, so `from` counts a peer's bitfield without a per-bit loop. */
const POPCOUNT = new Uint8Array(256);
for (let i = 1; i < 256; i++) POPCOUNT[i] = (i & 1) + POPCOUNT[i >> 1];

/** One bit per piece, high bit first (BEP 3), with the number of set bits kept up to date. */
export class Bitfield {
  readonly length: number;
  private readonly bytes: Uint8Array;
  private setCount = 0;

  /** @param length number of pieces */
  constructor(length: number) {
    if (!Number.isInteger(length) || length < 0) throw new RangeError(`invalid bitfield length ${length}`);
    this.length = length;
    this.bytes = new Uint8Array((length + 7) >>> 3);
  }

  /** Throws RangeError if `bytes` is not exactly ceil(length/8) long or a spare trailing bit is set (BEP 3 says drop such peers). */
  static from(bytes: Uint8Array, length: number): Bitfield {
    const field = new Bitfield(length);
    if (bytes.length !== field.bytes.length) {
      throw new RangeError(`bitfield of ${bytes.length} bytes for ${length} pieces (expected ${field.bytes.length})`);
    }
    const spare = (field.bytes.length << 3) - length;
    if (spare > 0 && (bytes[bytes.length - 1] & ((1 << spare) - 1)) !== 0) {
      throw new RangeError('bitfield has spare trailing bits set');
    }
    field.bytes.set(bytes);
    let count = 0;
    for (let i = 0; i < bytes.length; i++) count += POPCOUNT[bytes[i]];
    field.setCount = count;
    return field;
  }

  get count(): number {
    return this.setCount;
  }

  /** False for an index outside the field (a peer cannot have a piece that does not exist). */
  get(i: number): boolean {
    if (!(i >= 0 && i < this.length)) return false;
    return (this.bytes[i >>> 3] & (0x80 >>> (i & 7))) !== 0;
  }

  set(i: number): void {
    this.check(i);
    const mask = 0x80 >>> (i & 7);
    const byte = this.bytes[i >>> 3];
    if ((byte & mask) === 0) {
      this.bytes[i >>> 3] = byte | mask;
      this.setCount++;
    }
  }

  clear(i: number): void {
    this.check(i);
    const mask = 0x80 >>> (i & 7);
    const byte = this.bytes[i >>> 3];
    if ((byte & mask) !== 0) {
      this.bytes[i >>> 3] = byte & ~mask;
      this.setCount--;
    }
  }

  full(): boolean {
    return this.setCount === this.length;
  }

  /** A copy, ready for encodeBitfield. */
  toBuffer(): Buffer {
    return Buffer.from(this.bytes);
  }

  /** Indexes set, ascending; whole zero bytes are skipped. */
  *[Symbol.iterator](): Iterator<number> {
    const bytes = this.bytes;
    for (let b = 0; b < bytes.length; b++) {
      const byte = bytes[b];
      if (byte === 0) continue;
      for (let bit = 0; bit < 8; bit++) {
        if ((byte & (0x80 >>> bit)) !== 0) yield (b << 3) + bit;
      }
    }
  }

  private check(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) {
      throw new RangeError(`piece index ${i} outside a bitfield of ${this.length}`);
    }
  }
}
