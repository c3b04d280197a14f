import { randomBytes } from 'node:crypto';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { basename, join } from 'node:path';
import { Readable } from 'node:stream';
import { Logger } from '@nestjs/common';
import type { ThrottleService } from '#ops';
import { parseBlobMetainfo, type BlobMetainfo } from '../torrent/blob-torrent.js';
import { InvalidMetainfoError, TorrentGoneError } from '../swarm.errors.js';
import { BufferPool } from '../engine/buffer-pool.js';
import { PeerConnection } from '../engine/peer-connection.js';
import { TorrentSession, type Reader, type SessionContext } from '../engine/torrent-session.js';
import type { PeerReputation } from './peer-reputation.js';
import { SeedLru } from './seed-lru.js';
import type { SwarmMetrics, TorrentPeersSnapshot } from './swarm.metrics.js';
import type { SwarmDownloader } from './swarm-downloader.js';

export interface SwarmClientOptions {
  /** Fixed BitTorrent listen port (config `p2pPort`; 0 picks a free one, tests only). */
  port: number;
  /** Address to listen on (default all interfaces). */
  host?: string;
  /** Tracker announce URLs this process announces to (every replica), without the token. */
  trackers: string[];
  /**
   * Swarm token: peers prove they know it before any piece moves (and it is added to announce URLs
   * as `?token=`). Never logged. Without one, peers still run the proof with an empty key (an open swarm).
   */
  swarmToken?: string;
  /** The process's throttle and the names of its limits that the client draws from live. */
  throttle: ThrottleService;
  limits: { download?: string; upload?: string };
  /** Most torrents seeded at once (least recently used stop first). */
  maxSeeding: number;
  /** Seconds a torrent keeps being seeded after its last use. */
  seedTtlSeconds: number;
  /**
   * Peers unchoked at once per torrent (default 4, classic BitTorrent): an upload split over many
   * peers makes each piece take longer to arrive, and a peer passes a piece on only once it has all of it.
   */
  uploadSlots?: number;
  /** Connections per torrent (default 55). */
  maxConns?: number;
  /** First delay, seconds, before announcing again to a tracker that has not answered yet. */
  reannounceSeconds?: number;
  /** Progress log lines every this many seconds for downloads still running. */
  progressLogSeconds?: number;
  /** What this process is (default agent): proxies say so in their peer id, so agents count their bytes as `proxy`, and super-seed. */
  role?: SwarmRole;
  metrics?: SwarmMetrics;
  /** Called once a torrent stops being seeded (cap, ttl, stopSeeding, destroy): unpin the file. */
  onStopSeeding?: (event: { infoHash: string; path: string; reason: StopReason }) => void;
  /** A seeded file failed a piece's SHA-1 when read: it has stopped being seeded; evict and refetch it. */
  onCorruptFile?: (event: { infoHash: string; name: string; path: string; piece: number }) => void;
  /** Seeds hand each piece to one peer first (default: on for the proxy role). */
  superSeed?: boolean;
  /** Check pieces read from disk before uploading them (default true; false only for drills playing a liar). */
  verifyReads?: boolean;
  /** A peer that has not proven the token within this many ms is dropped (default 10 s). */
  authTimeoutMs?: number;
}

export type StopReason = 'cap' | 'ttl' | 'stopped' | 'replaced' | 'shutdown' | 'corrupt';

export interface TransferProgress {
  /** Piece bytes received from peers (minus pieces that failed verification): stall detection. */
  received: number;
  /** Verified bytes held. */
  bytes: number;
  length: number;
  /** Bytes/s over the last seconds. */
  downloadRate: number;
  uploadRate: number;
  peers: number;
  /** Epoch ms of the last block received (stall detection). */
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
   * it are never requested. The torrent then never completes (`done` stays pending): the caller
   * verifies and caches the blob from its own bytes plus what the download delivers from there.
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
  /** Verified bytes from `start`, in order, as pieces arrive (read from `path`). */
  createReadStream(start?: number): Readable;
  /**
   * For callers that read `path` themselves: the end of the contiguous verified bytes from
   * `start` (written to `path`), each time it grows, up to `length`. Keeps the reader window on
   * the pieces that come next; throws TorrentGoneError if the download stops.
   */
  stored(start?: number): AsyncIterable<number>;
  progress(): TransferProgress;
  readonly pieceLength: number;
  /** The piece holding byte `pos`: held, blocks coming in, on how many connected peers. */
  pieceAt(pos: number): { index: number; have: boolean; receiving: boolean; available: number };
  /**
   * Piece `index` fetched another way (e.g. the proxy's relay): if it matches its SHA-1 the torrent
   * stops fetching it from peers, writes it into `path` and holds and seeds it; false on a mismatch.
   */
  adopt(index: number, data: Buffer): boolean;
  /**
   * For callers that read `path` themselves and may fill pieces in too: the end of the contiguous
   * pieces held from a position, and a wait for the next one; the reader window follows `moveTo`.
   */
  watch(start: number): StoredWatch;
  /** Resolves with `path` when every piece is verified; rejects if destroyed first. */
  readonly done: Promise<string>;
  addPeers(peers: string[]): void;
  /** Stops the download and closes its connections; the file stays (the owner deletes it). */
  destroy(): Promise<void>;
}

export interface StoredWatch {
  /** End of the contiguous held bytes from `pos`. */
  end(pos: number): number;
  /** The reader is at `pos` now (the picker favours the pieces from there). */
  moveTo(pos: number): void;
  /** Resolves at the next piece held, or after `ms`; throws TorrentGoneError once the download stops. */
  wait(ms: number): Promise<void>;
  close(): void;
}

export type SwarmRole = 'agent' | 'proxy';

// Peer id prefixes (Azureus style, 8 bytes): telling a proxy from a peer by address breaks behind
// NAT and on one host; the id travels in the handshake.
const PEER_ID_PREFIX: Record<SwarmRole, string> = { agent: '-P2PAG2-', proxy: '-P2PPX2-' };
const PROXY_PEER_ID_HEX = Buffer.from('-P2PPX').toString('hex');
const MAX_REPUTATIONS = 1000;
const READ_CHUNK = 1024 * 1024;
const DIAL_TIMEOUT_MS = 10_000;

/**
 * The process's one BitTorrent client on our own engine (libs/swarm/src/engine): BEP 3 wire on raw
 * TCP, peers authenticated by the swarm token before anything moves, private torrents announced to
 * the cluster's trackers only. Seeds verified cache files in place and writes downloads straight
 * into the file the caller names.
 */
export class SwarmClient implements SwarmDownloader {
  private readonly logger = new Logger(SwarmClient.name);
  /** ip:port of peers handed to us as direct peers (owning proxies): trusted, never banned. */
  private readonly directPeers = new Set<string>();
  private readonly reputations = new Map<string, PeerReputation<PeerConnection>>();
  private readonly sessions = new Map<string, TorrentSession>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly seeds: SeedLru;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly ctx: SessionContext;
  private readonly timer: NodeJS.Timeout;
  private readonly listening: Promise<number>;
  private port = 0;
  private destroyed = false;

  constructor(private readonly options: SwarmClientOptions) {
    const role = options.role ?? 'agent';
    const localId = Buffer.concat([Buffer.from(PEER_ID_PREFIX[role]), randomBytes(12)]);
    const announceUrls = options.trackers.map((url) => withToken(url, options.swarmToken));
    this.ctx = {
      localId,
      token: options.swarmToken ?? '',
      port: () => this.port,
      announceUrls,
      reannounceSeconds: options.reannounceSeconds ?? 10,
      throttle: options.throttle,
      limits: options.limits,
      pool: new BufferPool(),
      metrics: options.metrics,
      uploadSlots: options.uploadSlots ?? 4,
      maxConns: options.maxConns ?? 55,
      superSeed: options.superSeed ?? role === 'proxy',
      verifyReads: options.verifyReads ?? true,
      progressLogSeconds: options.progressLogSeconds ?? 5,
      isProxy: (peer) => peer.remoteIdHex.startsWith(PROXY_PEER_ID_HEX),
      isTrusted: (peer) => this.directPeers.has(peer.address),
      dial: (session, address) => this.dial(session, address),
      corrupt: (session, index) => this.onCorrupt(session, index),
    };
    this.server = createServer((socket) => this.accept(socket));
    this.listening = new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ port: options.port, host: options.host }, () => {
        this.server.off('error', reject);
        this.server.on('error', (err) => this.logger.error({ msg: 'BitTorrent listener error', reason: err.message }));
        this.port = (this.server.address() as { port: number }).port;
        resolve(this.port);
      });
    });
    // Nobody may be awaiting ready(); the failure is logged here once.
    this.listening.catch((err: unknown) => this.logger.error({ msg: 'BitTorrent listener failed', reason: (err as Error).message }));
    this.seeds = new SeedLru(options.maxSeeding, options.seedTtlSeconds * 1000);
    this.timer = setInterval(() => this.tick(), 1000);
    this.timer.unref();
    options.metrics?.observe(() => this.peersSnapshot());
  }

  /** Resolves with the BitTorrent port once the client listens. */
  ready(): Promise<number> {
    return this.listening;
  }

  /**
   * Seeds a verified blob in place (no copy, no re-hash: pieces are checked as they are read):
   * `filePath`'s basename must be the torrent name (digest hex). Seeding again refreshes its ttl;
   * a download of the same torrent becomes the seed (its connections stay).
   */
  async seed(metainfo: Uint8Array, filePath: string): Promise<{ infoHash: string }> {
    this.assertAlive();
    const info = parseBlobMetainfo(metainfo);
    if (basename(filePath) !== info.name) {
      throw new InvalidMetainfoError(`cannot seed ${filePath}: its basename must be the torrent name ${info.name}`);
    }
    return this.exclusive(info.infoHash, async () => {
      const existing = this.sessions.get(info.infoHash);
      if (existing?.state === 'seeding' && existing.path === filePath) {
        this.touchSeed(info.infoHash);
        return { infoHash: info.infoHash };
      }
      if (existing) await existing.becomeSeed(filePath);
      else await this.openSession(info, filePath, 'seeding');
      this.touchSeed(info.infoHash);
      return { infoHash: info.infoHash };
    });
  }

  /** Marks a seeded torrent as used (LRU order and ttl restart). */
  touch(infoHash: string): void {
    if (this.sessions.get(infoHash)?.state === 'seeding') this.touchSeed(infoHash);
  }

  /** Stops seeding (e.g. the cache evicts the file). */
  async stopSeeding(infoHash: string): Promise<void> {
    if (this.sessions.get(infoHash)?.state === 'seeding') await this.remove(infoHash, 'stopped');
  }

  /**
   * Starts downloading a blob torrent into `dir` (returns once the file is open). An existing
   * download of the same torrent is shared; a torrent already seeded is returned complete.
   */
  async download(metainfo: Uint8Array, opts: DownloadOptions): Promise<DownloadHandle> {
    this.assertAlive();
    const info = parseBlobMetainfo(metainfo);
    const session = await this.exclusive(info.infoHash, async () => {
      const s = this.sessions.get(info.infoHash) ?? (await this.openSession(info, join(opts.dir, info.name), 'downloading'));
      if (opts.skipBefore) s.skipBefore(opts.skipBefore);
      return s;
    });
    const handle = this.handleFor(session);
    handle.addPeers(opts.peers ?? []);
    return handle;
  }

  /** What the process downloads and seeds, for `GET /admin/torrents`. */
  list(): TorrentSummary[] {
    return [...this.sessions.values()].map((s) => ({
      infoHash: s.info.infoHash,
      name: s.info.name,
      state: s.state,
      path: s.path,
      ...progressOf(s),
      uploaded: s.up.total,
      startedAt: new Date(s.startedAt).toISOString(),
      peerAddresses: [...s.peers].filter((p) => p.authenticated).map((p) => p.address),
    }));
  }

  /** Stops every torrent and closes the listener (files stay). */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    clearInterval(this.timer);
    for (const infoHash of [...this.sessions.keys()]) await this.remove(infoHash, 'shutdown');
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.ctx.pool.trim();
  }

  /** A new session for `info` on `path`, registered once its file is open (else nothing is left behind). */
  private async openSession(info: BlobMetainfo, path: string, state: 'seeding' | 'downloading'): Promise<TorrentSession> {
    const session = new TorrentSession(info, path, state, this.ctx, this.reputationFor(info.infoHash));
    this.sessions.set(info.infoHash, session);
    try {
      await session.opened();
      return session;
    } catch (err) {
      this.sessions.delete(info.infoHash);
      await session.close();
      throw err;
    }
  }

  // --- connections -----------------------------------------------------------------------

  private accept(socket: Socket): void {
    if (this.destroyed) return void socket.destroy();
    this.track(socket);
    new PeerConnection(
      socket,
      'acceptor',
      (infoHash, peer) => {
        const session = this.sessions.get(infoHash.toString('hex'));
        return session?.accept(peer) ? session : undefined;
      },
      this.options.authTimeoutMs ?? 10_000,
    );
  }

  private dial(session: TorrentSession, address: string): void {
    const target = parseAddress(address);
    if (!target || this.destroyed) {
      session.dialEnded(address, false);
      return;
    }
    const socket = netConnect({ host: target.host, port: target.port });
    this.track(socket);
    let connected = false;
    const timer = setTimeout(() => socket.destroy(new Error('connect timeout')), DIAL_TIMEOUT_MS);
    timer.unref();
    socket.once('connect', () => {
      connected = true;
      clearTimeout(timer);
      session.dialEnded(address, true);
    });
    socket.once('close', () => {
      clearTimeout(timer);
      if (!connected) session.dialEnded(address, false);
    });
    const peer = new PeerConnection(socket, 'initiator', () => undefined, this.options.authTimeoutMs ?? 10_000, target);
    if (session.ended) {
      peer.close('torrent closed');
      return;
    }
    session.attach(peer);
    peer.start(session);
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    // A peer that vanishes without a FIN must not hold a slot for ever.
    socket.setKeepAlive(true, 30_000);
  }

  // --- downloads -------------------------------------------------------------------------

  private handleFor(session: TorrentSession): DownloadHandle {
    const length = session.info.length;
    const stored = (start = 0): AsyncIterable<number> =>
      (async function* () {
        const reader: Reader = { pos: start };
        session.addReader(reader);
        try {
          while (reader.pos < length) {
            const end = session.storedEnd(reader.pos);
            if (end > reader.pos) {
              reader.pos = end;
              session.moveReader();
              yield end;
              continue;
            }
            await session.nextVerified();
          }
        } finally {
          session.removeReader(reader);
        }
      })();
    return {
      infoHash: session.info.infoHash,
      name: session.info.name,
      length,
      path: session.path,
      done: session.done,
      progress: () => progressOf(session),
      pieceLength: session.info.pieceLength,
      pieceAt: (pos) => {
        const index = Math.floor(pos / session.info.pieceLength);
        return { index, ...session.pieceStatus(index) };
      },
      watch: (start) => {
        const reader: Reader = { pos: start };
        session.addReader(reader);
        return {
          end: (pos) => session.storedEnd(pos),
          moveTo: (pos) => {
            reader.pos = pos;
            session.moveReader();
          },
          wait: (ms) => session.nextVerified(ms),
          close: () => session.removeReader(reader),
        };
      },
      adopt: (index, data) => session.adopt(index, data),
      addPeers: (peers) => {
        for (const peer of peers) this.directPeers.add(peer);
        session.addDirect(peers);
      },
      stored,
      createReadStream: (start = 0) =>
        Readable.from(
          (async function* () {
            const { open } = await import('node:fs/promises');
            const fh = await open(session.path, 'r');
            try {
              let pos = start;
              for await (const end of stored(start)) {
                while (pos < end) {
                  const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, end - pos));
                  const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
                  if (bytesRead <= 0) throw new TorrentGoneError(`${session.path} is shorter than its verified pieces`);
                  pos += bytesRead;
                  yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
                }
              }
            } finally {
              await fh.close();
            }
          })(),
          { objectMode: false },
        ),
      destroy: async () => {
        if (this.sessions.get(session.info.infoHash) === session && session.state === 'downloading') {
          await this.remove(session.info.infoHash, 'stopped');
        }
      },
    };
  }

  private onCorrupt(session: TorrentSession, piece: number): void {
    const infoHash = session.info.infoHash;
    this.logger.error({
      msg: 'piece fails its SHA-1 on disk; stopping seeding it so the owner evicts and refetches it',
      infoHash,
      path: session.path,
      piece,
    });
    this.options.metrics?.corruptFiles.inc();
    if (this.sessions.get(infoHash) === session && session.state === 'seeding') {
      void this.remove(infoHash, 'corrupt').then(() =>
        this.options.onCorruptFile?.({ infoHash, name: session.info.name, path: session.path, piece }),
      );
    }
  }

  // --- bookkeeping -----------------------------------------------------------------------

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

  /**
   * One reputation per info hash, kept across sessions: a liar banned during a download must not
   * get back in once the torrent is seeded again. Bounded by MAX_REPUTATIONS.
   */
  private reputationFor(infoHash: string): PeerReputation<PeerConnection> | undefined {
    const known = this.reputations.get(infoHash);
    if (known) {
      this.reputations.delete(infoHash);
      this.reputations.set(infoHash, known);
    }
    return known;
  }

  private remember(session: TorrentSession): void {
    if (this.reputations.size >= MAX_REPUTATIONS) this.reputations.delete(this.reputations.keys().next().value as string);
    this.reputations.set(session.info.infoHash, session.reputation);
  }

  private touchSeed(infoHash: string): void {
    for (const evicted of this.seeds.touch(infoHash)) void this.remove(evicted, 'cap');
  }

  private async remove(infoHash: string, reason: StopReason): Promise<void> {
    const session = this.sessions.get(infoHash);
    if (!session) return;
    this.sessions.delete(infoHash);
    this.seeds.delete(infoHash);
    this.remember(session);
    await session.close();
    if (session.state === 'seeding') this.options.onStopSeeding?.({ infoHash, path: session.path, reason });
  }

  private tick(): void {
    for (const infoHash of this.seeds.takeExpired()) void this.remove(infoHash, 'ttl');
    const now = Date.now();
    for (const session of this.sessions.values()) session.tick(now);
  }

  private peersSnapshot(): TorrentPeersSnapshot[] {
    return [...this.sessions.values()].map((s) => ({ infoHash: s.info.infoHash, peers: s.peers.size, state: s.state }));
  }

  private assertAlive(): void {
    if (this.destroyed) throw new TorrentGoneError('swarm client is shut down');
  }
}

function progressOf(s: TorrentSession): TransferProgress {
  return {
    bytes: s.verifiedBytes,
    received: s.received,
    length: s.info.length,
    downloadRate: s.down.rate(),
    uploadRate: s.up.rate(),
    peers: s.peers.size,
    lastProgressAt: s.lastProgressAt,
  };
}

/** `host:port` or `[v6]:port` → parts; undefined when malformed. */
function parseAddress(address: string): { host: string; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:]+):(\d+)$/.exec(address);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) return undefined;
  return { host: m[1], port };
}

/** Appends the swarm token the way trackers read it (`token` query parameter). */
export function withToken(url: string, token: string | undefined): string {
  if (!token) return url;
  return `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
}
