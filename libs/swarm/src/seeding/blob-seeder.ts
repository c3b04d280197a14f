import { Logger } from '@nestjs/common';
import { durationMs } from '#ops';
import type { SwarmClient } from '../client/swarm-client.js';
import type { BlobSeeding } from './blob-seeding.js';
import { createBlobTorrent, createBlobTorrentFromPieces, describeMetainfo, type BlobTorrent } from '../torrent/blob-torrent.js';

/**
 * The verified blob store the seeder reads from (the registry's content-addressed cache satisfies
 * it structurally, so this lib never imports the registry lib).
 */
export interface SeedableBlobStore {
  /** Path of a verified blob (basename = digest hex), or undefined when not cached. */
  path(digest: string): string | undefined;
  /** Size of a verified blob, or undefined. */
  size(digest: string): number | undefined;
  /** Keeps the blob from eviction until the returned function is called. */
  pin(digest: string): () => void;
  /** Drops a blob found corrupt on disk even while pinned (it is fetched again on the next request). */
  discardCorrupt(digest: string): Promise<boolean>;
  /** Called when the store drops a blob (eviction, removal). */
  onEvict(listener: (digest: string) => void): () => void;
  /** Called when a client is served a stored blob (a cache hit). */
  onServed(listener: (digest: string) => void): () => void;
}

const MAX_REMEMBERED = 10_000;
/**
 * Piece hashes waiting for their blob's first torrent request. Each is 20 B per piece (≤ 80 KiB
 * for a 64 GiB blob, typically a few KiB); a blob filled but never asked for falls out here.
 */
const MAX_PENDING_PIECES = 1_000;

/**
 * Seeds verified cache files: makes each blob's deterministic torrent once (from piece hashes
 * computed during the fetch when offered, else SHA-1 over the file), remembers its metainfo, keeps
 * the file pinned while seeded and stops seeding when the cache drops it. Used by the proxy
 * (torrents it serves) and the agent (blobs it downloaded).
 */
export class BlobSeeder implements BlobSeeding {
  private readonly logger = new Logger(BlobSeeder.name);
  private readonly torrents = new Map<string, BlobTorrent>();
  private readonly creating = new Map<string, Promise<BlobTorrent>>();
  private readonly pins = new Map<string, () => void>();
  private readonly pendingPieces = new Map<string, Buffer>();
  private readonly unsubscribe: () => void;
  private readonly unsubscribeServed: () => void;

  constructor(
    private readonly swarm: SwarmClient,
    private readonly store: SeedableBlobStore,
    private readonly announce: string[],
  ) {
    this.unsubscribe = store.onEvict((digest) => {
      this.pendingPieces.delete(digest);
      const known = this.torrents.get(digest);
      if (known) void this.swarm.stopSeeding(known.infoHash);
    });
    // A cache hit is a use: the blob keeps being seeded for seedTtl from now (the swarm's LRU and
    // TTL count from the last use, not from when the torrent was made).
    this.unsubscribeServed = store.onServed((digest) => {
      const known = this.torrents.get(digest);
      if (known) this.swarm.touch(known.infoHash);
    });
  }

  /** The metainfo of a cached blob, seeding it; the torrent is created on first use. */
  async torrentFor(digest: string): Promise<BlobTorrent> {
    let torrent = this.torrents.get(digest);
    if (!torrent) {
      let pending = this.creating.get(digest);
      if (!pending) {
        pending = this.create(digest).finally(() => this.creating.delete(digest));
        this.creating.set(digest, pending);
      }
      torrent = await pending;
    }
    await this.seedFile(digest, torrent);
    return torrent;
  }

  /** Seeds a cached blob whose torrent is already known (an agent after a swarm download). */
  async seedWith(digest: string, metainfo: Uint8Array): Promise<void> {
    const { infoHash } = await describeMetainfo(metainfo);
    const torrent = { metainfo: Buffer.from(metainfo), infoHash };
    this.remember(digest, torrent);
    await this.seedFile(digest, torrent);
  }

  /**
   * Piece hashes computed while the blob was fetched (`PieceHasher`), for `pieceLengthFor(size)`:
   * its torrent is then made from them instead of reading the file again. Call once the blob is
   * committed to the store; ignored when its torrent is already known.
   */
  offerPieces(digest: string, pieces: Buffer): void {
    if (this.torrents.has(digest)) return;
    this.pendingPieces.delete(digest);
    if (this.pendingPieces.size >= MAX_PENDING_PIECES) this.pendingPieces.delete(this.pendingPieces.keys().next().value as string);
    this.pendingPieces.set(digest, pieces);
  }

  /**
   * Wire into `SwarmClient`'s `onCorruptFile`: a seeded file failed a piece's SHA-1 when read, so
   * it is dropped from the store (and its torrent forgotten); the next request for the blob fetches
   * it again from its sources. Nothing corrupt was uploaded: the engine checks before it sends.
   */
  async corrupt(digest: string): Promise<void> {
    this.torrents.delete(digest);
    this.pendingPieces.delete(digest);
    try {
      if (await this.store.discardCorrupt(digest))
        this.logger.warn({ msg: 'corrupt file evicted from the cache; it will be fetched again', digest });
    } catch (err) {
      this.logger.error({ msg: 'cannot evict the corrupt file', digest, reason: (err as Error).message });
    }
  }

  /** Wire into `SwarmClient`'s `onStopSeeding`: releases the file's pin. */
  stopped(infoHash: string): void {
    this.pins.get(infoHash)?.();
    this.pins.delete(infoHash);
  }

  close(): void {
    this.unsubscribe();
    this.unsubscribeServed();
    this.pendingPieces.clear();
    for (const unpin of this.pins.values()) unpin();
    this.pins.clear();
  }

  private async create(digest: string): Promise<BlobTorrent> {
    const path = this.store.path(digest);
    const size = this.store.size(digest);
    const pieces = this.pendingPieces.get(digest);
    this.pendingPieces.delete(digest);
    if (!path || size === undefined) throw new Error(`blob ${digest} is not in the cache`);
    if (pieces) {
      try {
        const torrent = createBlobTorrentFromPieces(hexOf(digest), size, pieces, this.announce);
        this.logger.log({ msg: 'torrent made from fill-time piece hashes', digest, infoHash: torrent.infoHash, bytes: size });
        this.remember(digest, torrent);
        return torrent;
      } catch (err) {
        this.logger.warn({ msg: 'precomputed piece hashes unusable; hashing the file', digest, reason: (err as Error).message });
      }
    }
    const unpin = this.store.pin(digest);
    try {
      const started = performance.now();
      const torrent = await createBlobTorrent(path, hexOf(digest), size, this.announce);
      this.logger.log({
        msg: 'torrent made',
        digest,
        infoHash: torrent.infoHash,
        bytes: size,
        durationMs: durationMs(performance.now() - started),
      });
      this.remember(digest, torrent);
      return torrent;
    } finally {
      unpin();
    }
  }

  private async seedFile(digest: string, torrent: BlobTorrent): Promise<void> {
    const path = this.store.path(digest);
    if (!path) throw new Error(`blob ${digest} left the cache`);
    if (!this.pins.has(torrent.infoHash)) this.pins.set(torrent.infoHash, this.store.pin(digest));
    try {
      await this.swarm.seed(torrent.metainfo, path);
    } catch (err) {
      this.stopped(torrent.infoHash);
      throw err;
    }
  }

  private remember(digest: string, torrent: BlobTorrent): void {
    if (this.torrents.size >= MAX_REMEMBERED) this.torrents.delete(this.torrents.keys().next().value as string);
    this.torrents.set(digest, torrent);
  }
}

function hexOf(digest: string): string {
  return digest.startsWith('sha256:') ? digest.slice(7) : digest;
}
