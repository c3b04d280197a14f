import { createHash, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PieceHasher } from './piece-hasher.js';

function expectedPieces(data: Buffer, pieceLength: number): Buffer {
  const out: Buffer[] = [];
  for (let off = 0; off < data.length; off += pieceLength)
    out.push(
      createHash('sha1')
        .update(data.subarray(off, off + pieceLength))
        .digest(),
    );
  return Buffer.concat(out);
}

/** Splits `data` at the given (unsorted, possibly repeated) cut points. */
function chunked(data: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, data.length]) {
    chunks.push(data.subarray(prev, p));
    prev = p;
  }
  return chunks;
}

describe(PieceHasher.name, () => {
  it('gives the SHA-1 of every piece whatever the chunking (chunks spanning pieces, empty chunks)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 600 }),
        fc.integer({ min: 1, max: 64 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        (size, pieceLength, cuts) => {
          const data = randomBytes(size);
          const hasher = new PieceHasher(size, pieceLength);
          for (const chunk of chunked(data, cuts)) hasher.update(chunk);
          expect(hasher.digest().equals(expectedPieces(data, pieceLength))).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('covers the exact-multiple and single-chunk cases', () => {
    for (const [size, pieceLength] of [
      [64, 16],
      [65, 16],
      [15, 16],
      [16, 16],
    ] as const) {
      const data = randomBytes(size);
      const hasher = new PieceHasher(size, pieceLength);
      hasher.update(data);
      const digest = hasher.digest();
      expect(digest.length).toBe(20 * Math.ceil(size / pieceLength));
      expect(digest.equals(expectedPieces(data, pieceLength))).toBe(true);
    }
  });

  it('gives no pieces for an empty blob', () => {
    expect(new PieceHasher(0, 16).digest().length).toBe(0);
  });

  it('does not keep the chunk: the caller may reuse its buffer', () => {
    const data = randomBytes(100);
    const hasher = new PieceHasher(100, 32);
    const buf = Buffer.alloc(10);
    for (let off = 0; off < 100; off += 10) {
      data.copy(buf, 0, off, off + 10);
      hasher.data(buf);
      buf.fill(0xff);
    }
    expect(hasher.digest().equals(expectedPieces(data, 32))).toBe(true);
  });

  it('throws from digest() when fewer or more bytes than the size were fed', () => {
    const short = new PieceHasher(100, 32);
    short.update(randomBytes(99));
    expect(() => short.digest()).toThrow(/fed 99 bytes, expected 100/);
    const long = new PieceHasher(100, 32);
    long.update(randomBytes(60));
    long.update(randomBytes(60));
    expect(long.bytesSeen).toBe(120);
    expect(() => long.digest()).toThrow(/fed 120 bytes, expected 100/);
  });

  it('refuses an invalid size or piece length', () => {
    expect(() => new PieceHasher(-1, 16)).toThrow(RangeError);
    expect(() => new PieceHasher(1.5, 16)).toThrow(RangeError);
    expect(() => new PieceHasher(10, 0)).toThrow(RangeError);
  });
});
