import { createHash, type Hash } from 'node:crypto';

const SHA1_LENGTH = 20;

/**
 * SHA-1 of every piece of a blob, fed the blob's bytes in order as they arrive (a fill observer),
 * so a torrent can be made without reading the file a second time. Chunks may be any size and span
 * pieces; each is hashed synchronously and never retained, so the caller may reuse its buffer.
 */
export class PieceHasher {
  private readonly pieces: Buffer;
  private hash: Hash | undefined;
  private piece = 0;
  private inPiece = 0;
  private seen = 0;

  constructor(
    readonly size: number,
    readonly pieceLength: number,
  ) {
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`invalid blob size ${size}`);
    if (!Number.isSafeInteger(pieceLength) || pieceLength <= 0) throw new RangeError(`invalid piece length ${pieceLength}`);
    this.pieces = Buffer.alloc(Math.ceil(size / pieceLength) * SHA1_LENGTH);
  }

  /** Bytes fed so far (past `size` too: `digest()` reports the overrun rather than the fill failing mid-stream). */
  get bytesSeen(): number {
    return this.seen;
  }

  update(chunk: Buffer): void {
    const total = chunk.length;
    const usable = Math.min(total, this.size - Math.min(this.seen, this.size));
    this.seen += total;
    let off = 0;
    while (off < usable) {
      const take = Math.min(usable - off, this.pieceLength - this.inPiece);
      const hash = (this.hash ??= createHash('sha1'));
      hash.update(off === 0 && take === total ? chunk : chunk.subarray(off, off + take));
      off += take;
      this.inPiece += take;
      if (this.inPiece === this.pieceLength || this.piece * this.pieceLength + this.inPiece === this.size) this.finishPiece(hash);
    }
  }

  /** The FillObserver shape (every byte of the blob, in order, exactly once); bound, so it can be passed alone. */
  readonly data = (chunk: Buffer): void => this.update(chunk);

  /** The concatenated 20-byte SHA-1s of every piece (the metainfo's `pieces`); throws unless exactly `size` bytes were fed. */
  digest(): Buffer {
    if (this.seen !== this.size) throw new RangeError(`piece hasher fed ${this.seen} bytes, expected ${this.size}`);
    return this.pieces;
  }

  private finishPiece(hash: Hash): void {
    hash.digest().copy(this.pieces, this.piece * SHA1_LENGTH);
    this.hash = undefined;
    this.piece++;
    this.inPiece = 0;
  }
}
