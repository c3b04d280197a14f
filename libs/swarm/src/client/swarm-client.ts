import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { Logger } from '@nestjs/common';
import bencode from 'bencode';
import WebTorrent, { type Torrent, type Wire } from 'webtorrent';
import type { ThrottleService } from '#ops';
import { describeMetainfo } from '../torrent/blob-torrent.js';
import { InvalidMetainfoError, TorrentGoneError } from '../swarm.errors.js';
import { PeerReputation } from './peer-reputation.js';
import { SeedLru } from './seed-lru.js';
import { shareThrottle } from './shared-throttle.js';
import type { SwarmMetrics, TorrentPeersSnapshot } from './swarm.metrics.js';

export interface SwarmClientOptions {
  /** Fixed BitTorrent listen port (config `p2pPort`; 0 picks a free one, tests only). */
  port: number;
  /** Tracker announce URLs this process announces to (every replica), without the token. */
  trackers: string[];
  /** Swarm token added to announce URLs as `?token=` (never logged). */
  swarmToken?: string;
  /** The process's throttle and the names of its limits that the client follows live. */
  throttle: ThrottleService;
  limits: { download?: string; upload?: string };
  /** Most torrents seeded at once (least recently used stop first). */
  maxSeeding: number;
  /** Seconds a torrent keeps being seeded after its last use. */
  seedTtlSeconds: number;
  /** Peers unchoked at once per torrent (webtorrent default 10; raise on proxies). */
  uploadSlots?: number;
  /** Whole pieces cached in memory per torrent (0 = read through to the file: low RSS). */
  storeCacheSlots?: number;
  /** Outgoing connections per torrent (webtorrent default 55). */
  maxConns?: number;
  /** First delay, seconds, before announcing again to a tracker that has not answered yet. */
  reannounceSeconds?: number;
  /** Progress log lines every this many seconds for downloads still running. */
  progressLogSeconds?: number;
  /** What this process is (default agent): proxies say so in their peer id, so agents count their bytes as `proxy`. */
  role?: SwarmRole;
  metrics?: SwarmMetrics;
  /** Also counts bytes from these addresses as `proxy` (peers whose id does not say proxy). */
  isProxyAddress?: (ip: string) => boolean;
  /** Called once a torrent stops being seeded (cap, ttl, stopSeeding, destroy): unpin the file. */
  onStopSeeding?: (event: { infoHash: string; path: string; reason: 'cap' | 'ttl' | 'stopped' | 'replaced' | 'shutdown' }) => void;
}

export interface TransferProgress {
  /** Raw bytes received from peers (pieces that failed verification included): stall detection. */
  received: number;
  /** Verified bytes held. */
  bytes: number;
  length: number;
  /** Bytes/s over webtorrent's short window. */
  downloadRate: number;
  uploadRate: number;
  peers: number;
  /** Epoch ms of the last byte received (stall detection). */
  lastProgressAt: number;
}

export interface TorrentSummary extends TransferProgress {
  infoHash: string;
  name: string;
  state: 'seeding' | 'downloading';
  path: string;
  uploaded: number;
  startedAt: string;
  peerAddresses: string[];
}

export interface DownloadOptions {
  /** Directory the file is written to as `<dir>/<name>` (the cache's temp area). */
  dir: string;
  /** Direct peers `ip:port` (the owning proxy), used even with every tracker down. */
  peers?: string[];
  /**
   * The caller already holds bytes [0, skipBefore) (relayed from the proxy): pieces wholly before
   * it are never requested (deselected the moment the torrent is ready, before any request goes
   * out). The torrent then never completes (`done` stays pending): the caller verifies and caches
   * the blob from its own bytes plus what the download delivers from `skipBefore` on.
   */
  skipBefore?: number;
}

/** A running download of one blob torrent. */
export interface DownloadHandle {
  readonly infoHash: string;
  /** Torrent name = blob digest hex. */
  readonly name: string;
  readonly length: number;
  /** `<dir>/<name>`: complete and piece-verified once `done` resolves (sha256 is the owner's job). */
  readonly path: string;
  /** Verified bytes from `start`, in order, as pieces arrive (backpressured). */
  createReadStream(start?: number): Readable;
  /**
   * For callers that read `path` themselves: the end of the contiguous verified bytes from
   * `start` (written to `path`), each time it grows, up to `length`. Keeps the reader window on
   * the pieces that come next, as createReadStream does; throws TorrentGoneError if the download stops.
   */
  stored(start?: number): AsyncIterable<number>;
  progress(): TransferProgress;
  /** Resolves with `path` when every piece is verified; rejects if destroyed first. */
  readonly done: Promise<string>;
  addPeers(peers: string[]): void;
  /** Stops the download and closes its connections; the file stays (the owner deletes it). */
  destroy(): Promise<void>;
}

export type SwarmRole = 'agent' | 'proxy';

// Peer id prefixes (Azureus style, 8 bytes): telling a proxy from a peer by address breaks behind
// NAT and on one host; the id travels in the handshake.
const PEER_ID_PREFIX: Record<SwarmRole, string> = { agent: '-P2PAG1-', proxy: '-P2PPX1-' };
const PROXY_PEER_ID_HEX = Buffer.from(PEER_ID_PREFIX.proxy).toString('hex');

interface Entry {
  torrent: Torrent;
  state: 'seeding' | 'downloading';
  path: string;
  startedAt: number;
  lastProgressAt: number;
  answered: Set<string>;
  nextAnnounceAt: number;
  announceDelayMs: number;
  progressTimer?: NodeJS.Timeout;
}

const MAX_REANNOUNCE_MS = 5 * 60_000;
const MAX_REPUTATIONS = 1000;

/**
 * The process's one BitTorrent client, tuned for a datacenter: no DHT/LSD/uTP/PEX/NAT, fixed port,
 * plain (unencrypted) handshakes, private torrents announced to the cluster's trackers only.
 * Seeds verified cache files in place and streams downloads as pieces verify.
 */
export class SwarmClient {
  private readonly logger = new Logger(SwarmClient.name);
  /** ip:port of peers handed to us as direct peers (owning proxies): trusted, never banned. */
  private readonly directPeers = new Set<string>();
  private readonly reputations = new Map<string, PeerReputation<Wire>>();
  private readonly client: WebTorrent;
  private readonly entries = new Map<string, Entry>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly seeds: SeedLru;
  private readonly announceUrls: string[];
  private readonly unsubscribe: () => void;
  private readonly timer: NodeJS.Timeout;
  private readonly listening: Promise<number>;
  private destroyed = false;

  constructor(private readonly options: SwarmClientOptions) {
    const { throttle, limits } = options;
    this.client = new WebTorrent({
      dht: false,
      lsd: false,
      utp: false,
      utPex: false,
      natUpnp: false,
      natPmp: false,
      webSeeds: false,
      secure: 0,
      torrentPort: options.port,
      peerId: Buffer.concat([Buffer.from(PEER_ID_PREFIX[options.role ?? 'agent']), randomBytes(12)]).toString('hex'),
      maxConns: options.maxConns ?? 55,
      downloadLimit: limits.download ? toWebTorrentRate(throttle.get(limits.download)) : -1,
      uploadLimit: limits.upload ? toWebTorrentRate(throttle.get(limits.upload)) : -1,
    });
    if (limits.download) shareThrottle(this.client.throttleGroups.down, throttle, limits.download);
    if (limits.upload) shareThrottle(this.client.throttleGroups.up, throttle, limits.upload);
    this.client.on('error', (err: Error) => this.logger.error(`BitTorrent client error: ${err.message}`));
    this.listening = new Promise((resolve, reject) => {
      if (this.client.listening) return resolve(this.client.torrentPort);
      this.client.once('listening', () => resolve(this.client.address()?.port ?? this.client.torrentPort));
      this.client.once('error', reject);
    });
    // Nobody may be awaiting ready(); the rejection is logged by the 'error' handler above.
    this.listening.catch(() => undefined);
    this.unsubscribe = throttle.onChange(({ name, rate }) => {
      if (name === limits.download) this.client.throttleDownload(toWebTorrentRate(rate));
      if (name === limits.upload) this.client.throttleUpload(toWebTorrentRate(rate));
    });
    this.seeds = new SeedLru(options.maxSeeding, options.seedTtlSeconds * 1000);
    this.announceUrls = options.trackers.map((url) => withToken(url, options.swarmToken));
    this.timer = setInterval(() => this.tick(), 1000);
    this.timer.unref();
    options.metrics?.observe(() => this.peersSnapshot());
  }

  /** Resolves with the BitTorrent port once the client listens. */
  ready(): Promise<number> {
    return this.listening;
  }

  /**
   * Seeds a verified blob in place (no copy, no re-hash): `filePath`'s basename must be the
   * torrent name (digest hex). Seeding again refreshes its ttl; a download of the same torrent is
   * replaced (call this after moving the verified download into the cache).
   */
  async seed(metainfo: Uint8Array, filePath: string): Promise<{ infoHash: string }> {
    this.assertAlive();
    const summary = await describeMetainfo(metainfo);
    if (basename(filePath) !== summary.name) {
      throw new InvalidMetainfoError(`cannot seed ${filePath}: its basename must be the torrent name ${summary.name}`);
    }
    return this.exclusive(summary.infoHash, async () => {
      const existing = this.entries.get(summary.infoHash);
      if (existing?.state === 'seeding' && existing.path === filePath) {
        this.touchSeed(summary.infoHash);
        return { infoHash: summary.infoHash };
      }
      if (existing) await this.remove(summary.infoHash, 'replaced');
      const torrent = await this.add(metainfo, { path: dirname(filePath), skipVerify: true });
      this.track(torrent, 'seeding', filePath);
      this.touchSeed(summary.infoHash);
      return { infoHash: summary.infoHash };
    });
  }

  /** Marks a seeded torrent as used (LRU order and ttl restart). */
  touch(infoHash: string): void {
    if (this.entries.get(infoHash)?.state === 'seeding') this.touchSeed(infoHash);
  }

  /** Stops seeding (e.g. the cache evicts the file). */
  async stopSeeding(infoHash: string): Promise<void> {
    if (this.entries.get(infoHash)?.state === 'seeding') await this.remove(infoHash, 'stopped');
  }

  /**
   * Starts downloading a blob torrent into `dir` (returns once the torrent is added). An existing
   * download of the same torrent is shared; a torrent already seeded is returned complete.
   */
  async download(metainfo: Uint8Array, opts: DownloadOptions): Promise<DownloadHandle> {
    this.assertAlive();
    const summary = await describeMetainfo(metainfo);
    // Concurrent callers for one blob share one torrent (webtorrent refuses duplicates).
    const entry = await this.exclusive(summary.infoHash, async () => {
      const e =
        this.entries.get(summary.infoHash) ??
        this.track(await this.add(metainfo, { path: opts.dir }), 'downloading', join(opts.dir, summary.name));
      if (opts.skipBefore) skipPiecesBefore(e.torrent, opts.skipBefore);
      return e;
    });
    const handle = this.handleFor(entry);
    handle.addPeers(opts.peers ?? []);
    return handle;
  }

  /** What the process downloads and seeds, for `GET /admin/torrents`. */
  list(): TorrentSummary[] {
    return [...this.entries.entries()].map(([infoHash, e]) => ({
      infoHash,
      name: e.torrent.name,
      state: e.state,
      path: e.path,
      ...progressOf(e),
      uploaded: e.torrent.uploaded,
      startedAt: new Date(e.startedAt).toISOString(),
      peerAddresses: e.torrent.wires.map((w) => `${w.remoteAddress}:${w.remotePort}`),
    }));
  }

  /** Stops every torrent and closes the listener (files stay). */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    clearInterval(this.timer);
    this.unsubscribe();
    for (const infoHash of [...this.entries.keys()]) await this.remove(infoHash, 'shutdown');
    await new Promise<void>((resolve) => this.client.destroy(() => resolve()));
  }

  /** Runs `fn` after any other add/replace of the same torrent has finished. */
  private async exclusive<T>(infoHash: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(infoHash) ?? Promise.resolve();
    const run = previous.catch(() => undefined).then(fn);
    this.locks.set(infoHash, run);
    try {
      return await run;
    } finally {
      if (this.locks.get(infoHash) === run) this.locks.delete(infoHash);
    }
  }

  private add(metainfo: Uint8Array, opts: { path: string; skipVerify?: boolean }): Promise<Torrent> {
    return new Promise((resolve, reject) => {
      const torrent = this.client.add(Buffer.from(withoutAnnounce(metainfo)), {
        path: opts.path,
        skipVerify: opts.skipVerify ?? false,
        announce: this.announceUrls,
        private: true,
        storeCacheSlots: this.options.storeCacheSlots ?? 0,
        uploads: this.options.uploadSlots ?? 10,
        // Rarest first: agents that start together would otherwise move in lockstep and all fetch
        // the same piece from the proxy (measured: the proxy uploaded each layer ~15× at N=20).
        // The reader's next pieces get a higher-priority window (ReaderFocus) so streaming continues.
        strategy: 'rarest',
        destroyStoreOnDestroy: false,
      });
      const onError = (err: Error) => reject(err);
      torrent.once('error', onError);
      torrent.once('infoHash', () => {
        torrent.off('error', onError);
        torrent.on('error', (err: Error) => this.onTorrentError(torrent, err));
        resolve(torrent);
      });
    });
  }

  private track(torrent: Torrent, state: Entry['state'], path: string): Entry {
    const now = Date.now();
    const entry: Entry = {
      torrent,
      state,
      path,
      startedAt: now,
      lastProgressAt: now,
      answered: new Set(),
      nextAnnounceAt: now + (this.options.reannounceSeconds ?? 10) * 1000,
      announceDelayMs: (this.options.reannounceSeconds ?? 10) * 1000,
    };
    this.entries.set(torrent.infoHash, entry);
    const reputation = this.reputationFor(torrent.infoHash);
    torrent.on('verified', (index: number) => reputation.verified(index));
    torrent.on('warning', (err: Error) => {
      const failed = /^Piece (\d+) failed verification/.exec(err.message);
      if (failed) reputation.failed(Number(failed[1]));
      this.logger.debug(`torrent ${short(torrent.infoHash)}: ${err.message}`);
    });
    torrent.on('wire', (wire: Wire) => {
      if (reputation.isBanned(wire)) return wire.destroy();
      wire.on('piece', (index: number) => reputation.received(wire, index));
      wire.once('close', () => reputation.closed(wire));
      this.onWire(wire);
    });
    torrent.on('download', () => (entry.lastProgressAt = Date.now()));
    const watchTrackers = () => torrent.discovery?.tracker?.on('update', (data: { announce: string }) => entry.answered.add(data.announce));
    if (torrent.discovery) watchTrackers();
    else torrent.once('ready', watchTrackers);
    if (state === 'downloading') this.watchDownload(entry);
    return entry;
  }

  private watchDownload(entry: Entry): void {
    const { torrent } = entry;
    const every = (this.options.progressLogSeconds ?? 5) * 1000;
    entry.progressTimer = setInterval(() => {
      const p = progressOf(entry);
      this.logger.log(
        `pulling ${short(torrent.infoHash)}: ${(100 * p.bytes / Math.max(p.length, 1)).toFixed(1)}% ` +
          `${(p.downloadRate / 1e6).toFixed(1)} MB/s, ${p.peers} peers`,
      );
    }, every);
    entry.progressTimer.unref();
    torrent.once('done', () => {
      clearInterval(entry.progressTimer);
      this.options.metrics?.pullDuration.observe({ result: 'ok' }, (Date.now() - entry.startedAt) / 1000);
    });
  }

  /**
   * One reputation per info hash, kept across torrent instances: a finished download is replaced by
   * a seeding torrent, and a banned liar must not get back in that way. Bounded by MAX_REPUTATIONS.
   */
  private reputationFor(infoHash: string): PeerReputation<Wire> {
    let reputation = this.reputations.get(infoHash);
    if (!reputation) {
      reputation = new PeerReputation<Wire>(
        (wire, reason) => {
          this.logger.warn(`torrent ${short(infoHash)}: dropping peer ${wire.remoteAddress}:${wire.remotePort}: ${reason}`);
          this.options.metrics?.banned.inc();
          wire.destroy();
        },
        (wire) => this.directPeers.has(`${wire.remoteAddress}:${wire.remotePort}`),
      );
      if (this.reputations.size >= MAX_REPUTATIONS) this.reputations.delete(this.reputations.keys().next().value as string);
    } else {
      this.reputations.delete(infoHash);
    }
    this.reputations.set(infoHash, reputation);
    return reputation;
  }

  private onWire(wire: Wire): void {
    const metrics = this.options.metrics;
    if (!metrics) return;
    // Pieces only flow after the handshake, so the remote peer id is known by the first one.
    const isProxy = () => wire.peerId?.startsWith(PROXY_PEER_ID_HEX) || this.options.isProxyAddress?.(wire.remoteAddress) === true;
    wire.on('download', (n: number) => metrics.addBytes(isProxy() ? 'proxy' : 'peer', n));
    wire.on('upload', (n: number) => metrics.uploaded.inc(n));
  }

  private handleFor(entry: Entry): DownloadHandle {
    const { torrent } = entry;
    const file = () => {
      if (torrent.destroyed || !torrent.files[0]) throw new TorrentGoneError(`torrent ${torrent.infoHash} is gone`);
      return torrent.files[0];
    };
    const whenReady = () =>
      torrent.ready
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            torrent.once('ready', () => resolve());
            torrent.once('close', () => reject(new TorrentGoneError(`torrent ${torrent.infoHash} closed before it was ready`)));
          });
    const done = new Promise<string>((resolve, reject) => {
      if (torrent.done) return resolve(entry.path);
      torrent.once('done', () => resolve(entry.path));
      torrent.once('close', () => {
        if (!torrent.done) reject(new TorrentGoneError(`download of ${torrent.infoHash} stopped before it completed`));
      });
    });
    done.catch(() => undefined);
    return {
      infoHash: torrent.infoHash,
      name: torrent.name,
      length: torrent.length,
      path: entry.path,
      done,
      progress: () => progressOf(entry),
      addPeers: (peers) => {
        for (const peer of peers) {
          this.directPeers.add(peer);
          torrent.addPeer(peer);
        }
      },
      createReadStream: (start = 0) =>
        Readable.from(
          (async function* () {
            await whenReady();
            if (start >= torrent.length) return;
            const focus = new ReaderFocus(torrent);
            try {
              let pos = start;
              focus.at(pos);
              for await (const chunk of file().createReadStream({ start })) {
                pos += (chunk as Buffer).length;
                focus.at(pos);
                yield chunk as Buffer;
              }
            } finally {
              focus.release();
            }
          })(),
          { objectMode: false },
        ),
      stored: (start = 0) =>
        (async function* () {
          await whenReady();
          const focus = new ReaderFocus(torrent);
          try {
            let pos = start;
            while (pos < torrent.length) {
              let piece = Math.floor(pos / torrent.pieceLength);
              let end = pos;
              while (end < torrent.length && torrent.bitfield.get(piece)) end = Math.min(++piece * torrent.pieceLength, torrent.length);
              if (end > pos) {
                pos = end;
                yield end;
                continue;
              }
              focus.at(pos);
              await nextVerified(torrent);
            }
          } finally {
            focus.release();
          }
        })(),
      destroy: async () => {
        if (this.entries.get(torrent.infoHash)?.torrent === torrent && entry.state === 'downloading') {
          await this.remove(torrent.infoHash, 'stopped');
        }
      },
    };
  }

  private touchSeed(infoHash: string): void {
    for (const evicted of this.seeds.touch(infoHash)) void this.remove(evicted, 'cap');
  }

  private async remove(infoHash: string, reason: 'cap' | 'ttl' | 'stopped' | 'replaced' | 'shutdown'): Promise<void> {
    const entry = this.entries.get(infoHash);
    if (!entry) return;
    this.entries.delete(infoHash);
    this.seeds.delete(infoHash);
    clearInterval(entry.progressTimer);
    if (entry.state === 'downloading' && !entry.torrent.done) {
      this.options.metrics?.pullDuration.observe({ result: 'aborted' }, (Date.now() - entry.startedAt) / 1000);
    }
    // destroyStore false: the file belongs to the cache, never to the torrent.
    await new Promise<void>((resolve) => entry.torrent.destroy({ destroyStore: false }, () => resolve()));
    if (entry.state === 'seeding') this.options.onStopSeeding?.({ infoHash, path: entry.path, reason });
  }

  private tick(): void {
    for (const infoHash of this.seeds.takeExpired()) void this.remove(infoHash, 'ttl');
    const now = Date.now();
    for (const entry of this.entries.values()) {
      // HTTP trackers that never answered are retried only every 30 min by the library: a
      // tracker down at start would stay unused. Retry with backoff until each one answered.
      if (entry.answered.size >= this.announceUrls.length || now < entry.nextAnnounceAt) continue;
      entry.torrent.discovery?.tracker?.update();
      entry.announceDelayMs = Math.min(entry.announceDelayMs * 2, MAX_REANNOUNCE_MS);
      entry.nextAnnounceAt = now + entry.announceDelayMs;
    }
  }

  private onTorrentError(torrent: Torrent, err: Error): void {
    this.logger.warn(`torrent ${short(torrent.infoHash)} failed: ${err.message}`);
    const entry = this.entries.get(torrent.infoHash);
    if (entry?.torrent === torrent) void this.remove(torrent.infoHash, 'stopped');
  }

  private peersSnapshot(): TorrentPeersSnapshot[] {
    return [...this.entries.entries()].map(([infoHash, e]) => ({ infoHash, peers: e.torrent.numPeers, state: e.state }));
  }

  private assertAlive(): void {
    if (this.destroyed) throw new TorrentGoneError('swarm client is shut down');
  }
}

function progressOf(e: Entry): TransferProgress {
  const t = e.torrent;
  return {
    bytes: t.downloaded,
    received: t.received,
    length: t.length,
    downloadRate: t.downloadSpeed,
    uploadRate: t.uploadSpeed,
    peers: t.numPeers,
    lastProgressAt: e.lastProgressAt,
  };
}

/**
 * Deselects the pieces wholly before `offset`. On a torrent not ready yet, in a 'ready' listener
 * rather than later: webtorrent requests pieces synchronously after 'ready', and the caller's
 * bytes before `offset` may be in the very file the download writes.
 */
function skipPiecesBefore(torrent: Torrent, offset: number): void {
  const pieces = Math.floor(offset / torrent.pieceLength);
  if (pieces <= 0 || torrent.destroyed) return;
  if (torrent.ready) torrent.deselect(0, pieces - 1);
  else torrent.once('ready', () => torrent.deselect(0, pieces - 1));
}

/** Resolves at the torrent's next verified piece; throws TorrentGoneError once it is closed or destroyed. */
function nextVerified(torrent: Torrent): Promise<void> {
  if (torrent.destroyed) return Promise.reject(new TorrentGoneError(`torrent ${torrent.infoHash} is gone`));
  return new Promise((resolve, reject) => {
    const onVerified = () => {
      torrent.off('close', onClose);
      resolve();
    };
    const onClose = () => {
      torrent.off('verified', onVerified);
      reject(new TorrentGoneError(`torrent ${torrent.infoHash} is gone`));
    };
    torrent.once('verified', onVerified);
    torrent.once('close', onClose);
  });
}

/** Our throttle says 0 = unlimited; webtorrent says -1 = unlimited and 0 = blocked. */
export function toWebTorrentRate(rate: number): number {
  return rate > 0 ? rate : -1;
}

/** Appends the swarm token the way trackers read it (`token` query parameter). */
export function withToken(url: string, token: string | undefined): string {
  if (!token) return url;
  return `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
}

// The announce list of received metainfo is informational: this process announces to its own
// configured trackers (with its token). Dropping it leaves the info dict, hence the hash, intact.
function withoutAnnounce(metainfo: Uint8Array): Uint8Array {
  const decoded = bencode.decode(metainfo) as Record<string, unknown>;
  delete decoded['announce'];
  delete decoded['announce-list'];
  return bencode.encode(decoded);
}

function short(infoHash: string): string {
  return infoHash.slice(0, 12);
}

const FOCUS_PRIORITY = 2;
const FRONTIER_PRIORITY = 3;

/**
 * Pieces in the reader's window: an eighth of the blob, 2 to 8 pieces. Two pieces kept streaming
 * tight but made agents that start together want the same next pieces at once — all from the
 * proxy, the only holder (measured at N=20: the proxy uploaded each layer ~13×). A wider window
 * lets rarest-first spread agents over different pieces they can then trade, at the price of the
 * reader lagging the download by up to that many pieces.
 */
function focusPieces(totalPieces: number): number {
  return Math.max(2, Math.min(8, Math.floor(totalPieces / 8)));
}

/**
 * Keeps a small top-priority selection on the pieces a reader needs next, so a rarest-first torrent
 * still streams in order: inside the window (`focusPieces`) "rarest" picks among the next pieces only.
 * Stream selections are exact (never merged into the whole-file selection), so releasing the window
 * leaves the rest of the download alone.
 */
class ReaderFocus {
  private window: [number, number] | undefined;

  constructor(private readonly torrent: Torrent) {}

  at(pos: number): void {
    const pieces = Math.ceil(this.torrent.length / this.torrent.pieceLength);
    const first = Math.floor(pos / this.torrent.pieceLength);
    if (first >= pieces) return this.release();
    if (this.window?.[0] === first || this.torrent.destroyed) return;
    this.release();
    const last = Math.min(first + focusPieces(pieces) - 1, pieces - 1);
    // The piece the reader waits on comes first (time to first byte, no stall at the frontier);
    // the rest of the window follows, rarest first among themselves.
    this.torrent._select(first, first, FRONTIER_PRIORITY, undefined, true);
    if (last > first) this.torrent._select(first + 1, last, FOCUS_PRIORITY, undefined, true);
    this.window = [first, last];
  }

  release(): void {
    if (this.window && !this.torrent.destroyed) {
      const [first, last] = this.window;
      this.torrent._deselect(first, first, true);
      if (last > first) this.torrent._deselect(first + 1, last, true);
    }
    this.window = undefined;
  }
}
