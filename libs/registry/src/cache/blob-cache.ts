import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdir, readdir, rename, rm, stat, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Logger } from '@nestjs/common';
import { digestHex } from '../oci/oci-names.js';

export interface BlobCacheOptions {
  /** Data dir: verified blobs in `blobs/sha256/<hex>`, temp files in `tmp/`. */
  dir: string;
  /** Quota in bytes (0 = none). */
  maxBytes: number;
  /** Eviction starts above this fraction of maxBytes… */
  highWatermark: number;
  /** …and stops at this fraction. */
  lowWatermark: number;
  /** Also evict (LRU) while the disk has less free space than this, bytes (0 = no check). */
  minFreeBytes?: number;
}

export interface BlobCacheStats {
  bytes: number;
  entries: number;
  evictions: number;
}

/**
 * What identifies one file on disk: a file changed in place (written, truncated, replaced) since
 * it was verified differs in at least one of these (ctime moves on any write, and cannot be set back).
 */
export interface FileIdentity {
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

export function fileIdentity(st: { ino: number; size: number; mtimeMs: number; ctimeMs: number }): FileIdentity {
  return { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
}

export function sameFile(a: FileIdentity, b: FileIdentity): boolean {
  return a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}

interface Entry {
  size: number;
  /**
   * The file as it was when this process last knew its bytes hash to the digest (committed after
   * a verified fill, or hashed in full since start); undefined for blobs found on disk at start.
   */
  verified?: FileIdentity;
}

/**
 * Content-addressed blob store on disk. Only verified blobs are visible (a file's name is its sha256
 * hex, which the swarm relies on to seed it directly); files being produced live under `tmp/` until
 * their hash matches. LRU eviction between watermarks skips pinned blobs (being read or seeded).
 * A restart rebuilds the index from disk and deletes leftover temp files; the blobs it finds are
 * unverified until a reader hashes them again (see `verified`).
 */
export class BlobCache {
  private readonly logger = new Logger(BlobCache.name);
  /** Insertion order is recency order: oldest first. */
  private readonly entries = new Map<string, Entry>();
  private readonly pins = new Map<string, number>();
  private readonly events = new EventEmitter();
  private bytes = 0;
  private evictions = 0;
  private evicting: Promise<void> | undefined;
  private usable = false;
  /** A pending `start()` retry while the data dir is unusable. */
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;
  readonly blobDir: string;
  readonly tmpDir: string;

  constructor(readonly options: BlobCacheOptions) {
    this.blobDir = join(options.dir, 'blobs', 'sha256');
    this.tmpDir = join(options.dir, 'tmp');
  }

  /** Creates the layout, removes leftover temp files and indexes the verified blobs (oldest use first). */
  async init(): Promise<void> {
    await rm(this.tmpDir, { recursive: true, force: true });
    await mkdir(this.tmpDir, { recursive: true });
    await mkdir(this.blobDir, { recursive: true });
    const found: { hex: string; size: number; used: number }[] = [];
    for (const name of await readdir(this.blobDir)) {
      const file = join(this.blobDir, name);
      if (!/^[a-f0-9]{64}$/.test(name)) {
        await rm(file, { recursive: true, force: true });
        continue;
      }
      const st = await stat(file);
      if (st.isFile()) found.push({ hex: name, size: st.size, used: Math.max(st.atimeMs, st.mtimeMs) });
    }
    found.sort((a, b) => a.used - b.used);
    for (const f of found) this.add(f.hex, f.size);
    this.logger.log({ msg: 'cache ready', dir: this.options.dir, blobs: this.entries.size, bytes: this.bytes });
    this.usable = true;
    await this.evictIfNeeded();
  }

  /**
   * `init()` that never fails the process: an unusable data dir (unmounted, read-only, full) is
   * logged and retried every `retryMs` until it works, while the app serves and `/readyz` says why.
   * Until then `has()` is false and fills fail, so pulls get an error rather than a corrupt cache.
   */
  async start(retryMs = 10_000): Promise<void> {
    if (this.stopped) return;
    try {
      await this.init();
    } catch (err) {
      this.logger.error({
        msg: `cache unusable, retrying every ${retryMs / 1000}s`,
        dir: this.options.dir,
        reason: (err as Error).message,
      });
      this.retry = setTimeout(() => void this.start(retryMs), retryMs);
      this.retry.unref();
    }
  }

  /** Ends the start retries (app shutdown); the index and files stay as they are. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
  }

  /** Path of a verified blob, or undefined; counts as a use for LRU. */
  path(digest: string): string | undefined {
    const hex = digestHex(digest);
    const entry = this.entries.get(hex);
    if (!entry) return undefined;
    this.entries.delete(hex);
    this.entries.set(hex, entry);
    return join(this.blobDir, hex);
  }

  /** Size of a verified blob, or undefined. */
  size(digest: string): number | undefined {
    return this.entries.get(digestHex(digest))?.size;
  }

  has(digest: string): boolean {
    return this.entries.has(digestHex(digest));
  }

  /**
   * The identity of the blob's file when this process last verified its bytes, or undefined
   * (found on disk at start and not hashed since, or not cached). A file that no longer has this
   * identity has changed on disk since and must not be served.
   */
  verified(digest: string): FileIdentity | undefined {
    return this.entries.get(digestHex(digest))?.verified;
  }

  /** Records that the blob's file, with this identity, was hashed in full and matched its digest. */
  markVerified(digest: string, identity: FileIdentity): void {
    const entry = this.entries.get(digestHex(digest));
    if (entry && entry.size === identity.size) entry.verified = identity;
  }

  /** Keeps `digest` from eviction (present or still to come) until the returned function is called. */
  pin(digest: string): () => void {
    const hex = digestHex(digest);
    this.pins.set(hex, (this.pins.get(hex) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.pins.get(hex) ?? 1) - 1;
      if (n <= 0) this.pins.delete(hex);
      else this.pins.set(hex, n);
    };
  }

  /**
   * A fresh temp file path `tmp/<random>.part/<hex>` in a directory of its own (created): a torrent
   * download names its file after the digest hex, so it can write straight into it. Remove the
   * directory with `removeTempDir` once the file is committed or abandoned.
   */
  async tempFileInOwnDir(digest: string): Promise<string> {
    const dir = join(this.tmpDir, `${randomBytes(6).toString('hex')}.part`);
    await mkdir(dir, { recursive: true });
    return join(dir, digestHex(digest));
  }

  /** Removes the directory `tempFileInOwnDir` made for `tempFile` (and anything left in it). */
  async removeTempDir(tempFile: string): Promise<void> {
    const dir = dirname(tempFile);
    if (dirname(dir) !== this.tmpDir) throw new Error(`${tempFile} is not in a temp directory of this cache`);
    await rm(dir, { recursive: true, force: true });
  }

  /** Moves a file whose sha256 the caller has already verified into place (no second read). */
  async commitVerified(digest: string, tempFile: string): Promise<string> {
    const hex = digestHex(digest);
    const target = join(this.blobDir, hex);
    const { size } = await stat(tempFile);
    await rename(tempFile, target);
    // Identity after the rename (which moves ctime): what readers compare the file against.
    const verified = fileIdentity(await stat(target));
    const entry = this.entries.get(hex) ?? this.add(hex, size);
    entry.verified = verified;
    // Never the blob just committed: other temp copies (a swarm download being discarded) may still
    // hold the disk for a moment, and evicting the newcomer would waste the whole transfer.
    void this.evictIfNeeded(0, hex);
    return target;
  }

  /**
   * Drops a blob found corrupt on disk, pinned or not: it leaves the index at once (the next
   * request fills it again from its sources) and its file is deleted. Readers that already hold the
   * file open keep their descriptor; new ones never see it. True if it was cached.
   *
   * With `found` (the identity of the file the caller read), nothing happens when another verified
   * file is in place by now: a reader that took long to find its copy corrupt must not discard the
   * good file a refill has committed meanwhile. `reason` goes to the `onCorrupt` listeners.
   */
  async discardCorrupt(digest: string, found?: FileIdentity, reason = 'corrupt'): Promise<boolean> {
    const hex = digestHex(digest);
    if (!this.entries.has(hex)) return false;
    if (found) {
      const current = await stat(join(this.blobDir, hex)).catch(() => undefined);
      const verified = this.entries.get(hex)?.verified;
      if (!this.entries.has(hex)) return false;
      // A verified file other than the one found bad is in place: a refill replaced it meanwhile.
      if (current && verified && sameFile(fileIdentity(current), verified) && !sameFile(verified, found)) return false;
    }
    await this.drop(hex);
    this.events.emit('corrupt', `sha256:${hex}`, reason);
    return true;
  }

  /**
   * True when a blob of `incoming` bytes can be written (after whatever eviction can free) and still
   * leave `minFreeBytes` free; false while the cache is unusable. Callers serve without caching
   * when it is false, instead of failing the pull half-way on ENOSPC.
   */
  async canHold(incoming: number): Promise<boolean> {
    if (!this.usable) return false;
    // Eviction cannot free more than the blobs nobody is reading: when even that would leave the
    // disk below the floor, say no before throwing useful blobs away for nothing.
    if ((await this.diskShortfall(incoming)) > this.evictableBytes()) return false;
    await this.evictIfNeeded(incoming);
    const fs = await statfs(this.options.dir).catch(() => undefined);
    return fs !== undefined && fs.bavail * fs.bsize >= incoming + (this.options.minFreeBytes ?? 0);
  }

  /** Evicts first if `incoming` more bytes would cross the high watermark. */
  async ensureRoom(incoming: number): Promise<void> {
    await this.evictIfNeeded(incoming);
  }

  stats(): BlobCacheStats {
    return { bytes: this.bytes, entries: this.entries.size, evictions: this.evictions };
  }

  /** Called with the digest of every evicted blob (the swarm stops seeding it). */
  onEvict(listener: (digest: string) => void): () => void {
    this.events.on('evict', listener);
    return () => this.events.off('evict', listener);
  }

  /** A verified blob was opened to be served (a cache hit): its seeding is refreshed (seedTtl counts from the last use). */
  served(digest: string): void {
    this.events.emit('served', digest);
  }

  /** Called with the digest of every cache hit (see served). */
  onServed(listener: (digest: string) => void): () => void {
    this.events.on('served', listener);
    return () => this.events.off('served', listener);
  }

  /** Called with the digest of every blob discarded as corrupt (see discardCorrupt), and why. */
  onCorrupt(listener: (digest: string, reason: string) => void): () => void {
    this.events.on('corrupt', listener);
    return () => this.events.off('corrupt', listener);
  }

  private add(hex: string, size: number): Entry {
    const entry: Entry = { size };
    this.entries.set(hex, entry);
    this.bytes += size;
    return entry;
  }

  private async drop(hex: string): Promise<void> {
    const entry = this.entries.get(hex);
    if (!entry) return;
    this.entries.delete(hex);
    this.bytes -= entry.size;
    await rm(join(this.blobDir, hex), { force: true });
    this.events.emit('evict', `sha256:${hex}`);
  }

  private async evictIfNeeded(incoming = 0, keep?: string): Promise<void> {
    const { maxBytes, highWatermark, lowWatermark } = this.options;
    while (this.evicting) await this.evicting;
    const overQuota = maxBytes > 0 && this.bytes + incoming > maxBytes * highWatermark;
    const shortfall = await this.diskShortfall(incoming);
    if (!overQuota && shortfall <= 0) return;
    const target = Math.min(overQuota ? maxBytes * lowWatermark - incoming : Infinity, this.bytes - shortfall);
    this.evicting = (async () => {
      for (const hex of [...this.entries.keys()]) {
        if (this.bytes <= target) break;
        if (this.pins.has(hex) || hex === keep) continue;
        await this.drop(hex);
        this.evictions++;
      }
      if (this.bytes > target)
        this.logger.warn({ msg: 'cache cannot shrink to its target: remaining blobs are in use', bytes: this.bytes, target });
    })();
    try {
      await this.evicting;
    } finally {
      this.evicting = undefined;
    }
  }

  private evictableBytes(): number {
    let bytes = 0;
    for (const [hex, entry] of this.entries) if (!this.pins.has(hex)) bytes += entry.size;
    return bytes;
  }

  /** Bytes missing to keep minFreeBytes free once `incoming` more are written. */
  private async diskShortfall(incoming: number): Promise<number> {
    if (!this.options.minFreeBytes) return 0;
    const fs = await statfs(this.options.dir).catch(() => undefined);
    if (!fs) return 0;
    return Math.max(0, this.options.minFreeBytes + incoming - fs.bavail * fs.bsize);
  }
}
