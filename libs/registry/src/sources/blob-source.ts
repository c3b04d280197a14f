import type { Readable, Writable } from 'node:stream';
import type { ByteRange } from '../oci/byte-range.js';
import type { ClientCredentials } from '../origin/client-credentials.js';
import type { Origin } from '../origin/origin-set.js';

/** One blob of one repository at one origin, asked for with the client's credentials. */
export interface BlobRequest {
  origin: Origin;
  repository: string;
  /** `sha256:<hex>`, validated. */
  digest: string;
  credentials: ClientCredentials;
  /** Size when already known (the authorisation HEAD at the origin tells it). */
  size?: number;
}

/** Where a fill produces the blob: a fetcher may store bytes there itself (see StoredUntil). */
export interface FillTarget {
  /** The fill's temp file, `<dir>/<digest hex>`, alone in its directory, open for writing. */
  readonly path: string;
}

/**
 * What a fetcher given a FillTarget may yield instead of bytes: every byte before `storedUntil` is
 * now at its offset in the target file (written there by the fetcher, e.g. verified torrent
 * pieces). Unless the mark carries those bytes as `chunks`, the fill reads them back to hash them,
 * so the digest is checked on exactly what the cache will hold; it never writes them a second time.
 */
export interface StoredUntil {
  readonly storedUntil: number;
  /** Optional: the bytes [previous storedUntil, storedUntil) themselves, in order, still in memory (the verified piece
   *  buffers): the fill hashes them instead of reading the file back. Valid only until the fill asks the stream for its next item. */
  readonly chunks?: readonly Buffer[];
}

/** Sees a fill's bytes as the fill hashes them (see BlobFillOptions.observe). */
export interface FillObserver {
  /** The next bytes of the blob, in order; valid only during the call. */
  data(chunk: Buffer): void;
  /** the blob verified and committed */
  committed?(): void;
  /** the fill failed */
  failed?(err: Error): void;
}

/** Bytes of a blob from some offset on, as a fetcher produces them. */
export interface FetchedBlob {
  /** Size of the whole blob (not of the stream). */
  size: number;
  /**
   * The blob's bytes from the requested offset to the end: Buffers, or (from fetchers given a
   * target) StoredUntil marks for bytes already in the target file, in order.
   */
  stream: Readable;
  /**
   * Optional: bytes received so far below the stream (a counter). A swarm yields only whole
   * verified pieces, out of order under rarest-first, so a steady download can give the stream
   * nothing for longer than the stall timeout; while the bytes received over that window average
   * at least the fill's `stallMinRate`, the fetcher is not considered stalled.
   */
  received?: () => number;
  /**
   * Optional: the fill's `stallMinRate` for this fetcher instead of the configured one. A swarm
   * that keeps the reader's next bytes coming itself (rescuing a late piece over the relay) sets 1:
   * while it receives anything at all it is not stalled, whatever a proxy shared by many can give.
   */
  stallMinRate?: number;
  /**
   * Optional: true while the fetcher is still finding its source (a swarm download nobody has
   * unchoked yet); the fill does not count that as a stall. The fetcher bounds it (it must turn
   * false after a grace period, or a dead source would never be abandoned).
   */
  joining?: () => boolean;
  /**
   * Optional, for fetchers that write into the target themselves: called when the fill abandons
   * the fetcher; resolves once it can no longer write there (the next fetcher writes the same range).
   */
  stop?: () => Promise<void>;
}

/**
 * Produces a blob's bytes from one place (origin, swarm, …). Fetchers are tried in order; when one
 * errors or stalls mid-blob the next continues from the byte already written.
 */
export interface BlobFetcher {
  /** Label for metrics and logs: origin, peer, proxy… */
  readonly name: string;
  /**
   * The blob from `offset` on, or undefined when this fetcher cannot serve it (the next one is
   * tried). `target` is the fill's file, for fetchers that can store bytes there directly.
   */
  fetch(request: BlobRequest, offset: number, signal: AbortSignal, target?: FillTarget): Promise<FetchedBlob | undefined>;
  /** Optional: told when a fill of `digest` ended; `ok` = verified and in the cache (seed it, or clean up). */
  settled?(digest: string, ok: boolean): void;
}

/** A blob ready to be streamed to a client. */
export interface OpenedBlob {
  size: number;
  /** Where the bytes come from: `cache` for a verified file, else the fetcher filling it. */
  readonly source: string;
  /** Streams bytes [start, end] (whole blob by default); the stream errors if the blob proves wrong. */
  read(range?: ByteRange): Readable;
  /**
   * Writes bytes [start, end] into `dest` with two reused buffers (the serving path: no per-chunk
   * garbage); rejects if the blob proves wrong or `dest` closes. Does not end `dest`.
   */
  copyTo(dest: Writable, range?: ByteRange): Promise<void>;
  /**
   * Resolves once the whole blob has been read and checked, serving nothing (no served bytes
   * counted): a fill is then verified and in the cache; rejects if the blob proves wrong. For a
   * blob already in the cache it resolves at once. The proxy waits on it before making a torrent.
   */
  drain(): Promise<void>;
  /** Lets the cache evict the blob again; call once when the response is over. */
  release(): void;
}

/** Something that can serve a blob: the verified cache, or a producer that fills the cache. */
export interface BlobSource {
  /** The blob, or undefined when this source does not have it (the chain asks the next). */
  open(request: BlobRequest): Promise<OpenedBlob | undefined>;
}

/** Sources asked in order (cache → fill via fetchers); the mirror controller only knows this. */
export class BlobSourceChain implements BlobSource {
  constructor(private readonly sources: readonly BlobSource[]) {}

  /** The first source that has the blob, or undefined. */
  async open(request: BlobRequest): Promise<OpenedBlob | undefined> {
    for (const source of this.sources) {
      const opened = await source.open(request);
      if (opened) return opened;
    }
    return undefined;
  }
}
