import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { Logger } from '@nestjs/common';
import type { ThrottleService } from '#ops';
import { TorrentGoneError } from '../swarm.errors.js';
import { PeerReputation } from '../client/peer-reputation.js';
import type { SwarmMetrics } from '../client/swarm.metrics.js';
import type { BlobMetainfo } from '../torrent/blob-torrent.js';
import { Bitfield } from './bitfield.js';
import { BufferPool, SharedBuffer } from './buffer-pool.js';
import type { PeerConnection, PeerSessionLink } from './peer-connection.js';
import { PiecePicker, type ReaderWindow } from './piece-picker.js';
import { RateMeter } from './rate-meter.js';
import { TrackerAnnouncer } from './tracker-client.js';
import { encodeCancel, writeRequest, type WireMessage } from './wire-codec.js';

/** A torrent's fixed description (its parsed metainfo). */
export type TorrentInfo = BlobMetainfo;

/** What every session of one process shares (the client owns it). */
export interface SessionContext {
  localId: Buffer;
  token: string;
  port: () => number;
  announceUrls: string[];
  reannounceSeconds: number;
  throttle: ThrottleService;
  limits: { download?: string; upload?: string };
  pool: BufferPool;
  metrics?: SwarmMetrics;
  uploadSlots: number;
  maxConns: number;
  /** Seeds hand each piece to one peer first (BEP 16 style), so peers have different pieces to trade at once. */
  superSeed: boolean;
  /** Check each piece's SHA-1 when it is read from disk to be uploaded (off only for drills that play a liar). */
  verifyReads: boolean;
  progressLogSeconds: number;
  isProxy(peer: PeerConnection): boolean;
  isTrusted(peer: PeerConnection): boolean;
  dial(session: TorrentSession, address: string): void;
  /** A piece read from the seeded file failed its SHA-1: the file is corrupt. */
  corrupt(session: TorrentSession, index: number): void;
}

interface PieceJob {
  index: number;
  length: number;
  blockSize: number;
  blocks: number;
  buf: Buffer;
  /** Requests in flight per block. */
  requested: Uint8Array;
  /** When each block was last requested (epoch ms): the endgame duplicates only slow ones. */
  requestedAt: Float64Array;
  got: Uint8Array;
  gotCount: number;
  /** A parser is copying into this block of `buf` right now. */
  receiving: Uint8Array;
  /** Parsers copying into `buf` (it is verified and written only once they are done). */
  writers: number;
  contributors: Set<PeerConnection>;
  /** Bytes of the blocks got, by source: counted in the metrics once the piece verifies. */
  fromProxy: number;
  fromPeers: number;
  /**
   * Failed once with blocks from several peers: blocks carry no hash, so nobody can be blamed; it
   * is fetched again from one peer only (`solo`), so a second failure names the liar.
   */
  suspect: boolean;
  solo: PeerConnection | undefined;
  state: 'fetching' | 'writing';
}

interface BlockTarget {
  job: PieceJob;
  block: number;
  /** Endgame duplicate: copied here, then into the job if the block is still missing. */
  scratch?: Buffer;
}

export interface Reader {
  pos: number;
}

/** Bytes requested from one peer at once (a few MiB keeps a fast link busy, little enough to move on from a slow one). */
const PIPELINE_BYTES = 4 * 1024 * 1024;
/** The endgame (duplicate requests) covers at most this many missing pieces. */
const ENDGAME_MAX_MISSING = 4;
/** A block out this long may be asked of a second, idle peer in the endgame. */
const ENDGAME_AFTER_MS = 5_000;
/** Receive rate from one peer above which it gets PIPELINE_BYTES in flight. */
const FAST_PEER_RATE = 4_000_000;
const MAX_REQUESTS = 256;
const MAX_QUEUED_UPLOADS = 512;
/** A peer that sent no block for this long while we wait on requests gets them taken back. */
const SNUB_MS = 30_000;
/** Upload slots rotate at most this often (fair turns for peers waiting on a seed). */
const ROTATE_MS = 10_000;
const SUPER_SEED_AHEAD = 2;
const MAX_REVEAL_AHEAD = 16;
const PIECE_CACHE = 4;
const KEEPALIVE_MS = 60_000;
const MAX_DIRECT_RETRY_MS = 30_000;

/**
 * One torrent in the process: what we have, the peers we trade with, the pieces being fetched into
 * pooled buffers, verified by SHA-1 and written positionally into the file, and the pieces we
 * serve from disk (checked by SHA-1 again when read). Per block the work is O(1); per piece
 * started one scan of the piece list (PiecePicker).
 */
export class TorrentSession implements PeerSessionLink {
  readonly infoHash: Buffer;
  readonly pieceCount: number;
  readonly have: Bitfield;
  readonly peers = new Set<PeerConnection>();
  readonly picker: PiecePicker;
  readonly reputation: PeerReputation<PeerConnection>;
  readonly down = new RateMeter();
  readonly up = new RateMeter();
  readonly startedAt = Date.now();
  state: 'downloading' | 'seeding';
  path: string;
  /**
   * Piece payload bytes copied into blocks we asked for, as they stream in, minus blocks that were
   * cut off or arrived too late to be used and pieces that failed SHA-1 (or were thrown away with a
   * banned peer): what the stall rule watches. Protocol chatter and unwanted blocks never count, so
   * a peer sending nothing but garbage — over any number of connections — adds nothing.
   */
  received = 0;
  /** Verified bytes held. */
  verifiedBytes = 0;
  lastProgressAt = Date.now();
  ended = false;
  readonly done: Promise<string>;
  private resolveDone!: (path: string) => void;
  private rejectDone!: (err: Error) => void;
  private file: Promise<FileHandle> | undefined;
  private readonly jobs = new Map<number, PieceJob>();
  private readonly pendingWrites = new Set<Promise<unknown>>();
  private readonly pieceCache = new Map<number, Promise<SharedBuffer>>();
  private readonly waiters = new Set<{ resolve: () => void; reject: (e: Error) => void }>();
  private readonly readers = new Set<Reader>();
  /** Super-seeding: pieces revealed to connected peers that do not have them yet. */
  private readonly revealCount: Uint16Array;
  private readonly direct = new Map<string, { delayMs: number; timer?: NodeJS.Timeout }>();
  private readonly dialing = new Set<string>();
  private readonly logger = new Logger('TorrentSession');
  private window: ReaderWindow | undefined;
  /** Pieces wholly before this index are not wanted (the caller holds those bytes). */
  private skipPieces = 0;
  /** Wanted pieces not held yet. */
  private missing: number;
  private lastRotateAt = Date.now();
  private progressTimer: NodeJS.Timeout | undefined;
  private readonly announcer: TrackerAnnouncer;

  constructor(
    readonly info: TorrentInfo,
    path: string,
    state: 'downloading' | 'seeding',
    private readonly ctx: SessionContext,
    reputation: PeerReputation<PeerConnection> | undefined,
  ) {
    this.infoHash = info.infoHashBuf;
    this.pieceCount = info.pieces.length / 20;
    this.have = new Bitfield(this.pieceCount);
    this.picker = new PiecePicker(this.pieceCount);
    this.revealCount = new Uint16Array(this.pieceCount);
    this.path = path;
    this.state = state;
    this.done = new Promise<string>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.done.catch(() => undefined);
    this.reputation =
      reputation ??
      new PeerReputation<PeerConnection>(
        (peer, reason) => {
          this.logger.warn({ msg: 'dropping peer', infoHash: this.info.infoHash, peer: peer.address, reason });
          ctx.metrics?.banned.inc();
          peer.close(`banned: ${reason}`);
        },
        (peer) => ctx.isTrusted(peer),
      );
    if (state === 'seeding') this.markAllHave();
    this.missing = this.pieceCount - this.have.count;
    if (state === 'downloading') {
      this.file = open(path, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o644);
      this.startProgressLog();
    } else {
      this.file = open(path, 'r');
    }
    this.file.catch(() => undefined);
    this.announcer = new TrackerAnnouncer({
      urls: ctx.announceUrls,
      params: () => ({
        infoHash: this.infoHash,
        peerId: ctx.localId,
        port: ctx.port(),
        uploaded: this.up.total,
        downloaded: this.down.total,
        left: this.state === 'seeding' ? 0 : this.info.length - this.verifiedBytes,
      }),
      onPeers: (peers) => this.onTrackerPeers(peers),
      retryFirstMs: ctx.reannounceSeconds * 1000,
      onError: (url, err) => this.logger.debug({ msg: 'announce failed', infoHash: this.info.infoHash, tracker: url, reason: err.message }),
    });
    this.announcer.start();
  }

  get token(): string {
    return this.ctx.token;
  }

  get localId(): Buffer {
    return this.ctx.localId;
  }

  pieceLengthOf(index: number): number {
    return index === this.pieceCount - 1 ? this.info.length - index * this.info.pieceLength : this.info.pieceLength;
  }

  /** Opens the file the session reads and writes (for errors to surface before the caller goes on). */
  async opened(): Promise<void> {
    await this.file;
  }

  // --- peers -----------------------------------------------------------------------------

  /** An accepted connection that named this torrent; false = refuse (full). */
  accept(peer: PeerConnection): boolean {
    if (this.ended || this.peers.size >= this.ctx.maxConns) return false;
    this.peers.add(peer);
    return true;
  }

  /** An outgoing connection we made for this torrent. */
  attach(peer: PeerConnection): void {
    this.peers.add(peer);
  }

  /** Peers to keep connected while downloading (the owning proxy): redialled when the connection drops. */
  addDirect(addresses: string[]): void {
    for (const address of addresses) {
      if (!this.direct.has(address)) this.direct.set(address, { delayMs: 1000 });
      this.connect(address);
    }
  }

  connect(address: string): void {
    if (this.ended || this.dialing.has(address) || this.peers.size >= this.ctx.maxConns) return;
    for (const p of this.peers) if (p.address === address) return;
    this.dialing.add(address);
    this.ctx.dial(this, address);
  }

  dialEnded(address: string, ok: boolean): void {
    this.dialing.delete(address);
    if (!ok) this.redialLater(address);
  }

  authenticated(peer: PeerConnection): void {
    if (this.reputation.isBanned(peer)) {
      peer.close('banned');
      return;
    }
    for (const other of this.peers) {
      if (other === peer || other.remoteIdHex !== peer.remoteIdHex || other.state !== 'ready') continue;
      // Both sides dialled: both keep the connection opened by the lower peer id.
      const initiator = (p: PeerConnection) => (p.side === 'initiator' ? this.ctx.localId : p.remotePeerId());
      const drop = Buffer.compare(initiator(peer), initiator(other)) < 0 ? other : peer;
      drop.close('duplicate connection');
      if (drop === peer) return;
    }
    const d = this.direct.get(peer.address);
    if (d) d.delayMs = 1000;
    if (this.superSeeding) {
      this.revealUpTo(peer);
    } else if (this.have.count > 0) {
      peer.sendBitfield(this.have);
    }
  }

  message(peer: PeerConnection, m: WireMessage): void {
    switch (m.type) {
      case 'choke':
        peer.peerChoking = true;
        this.dropRequests(peer);
        return;
      case 'unchoke':
        peer.peerChoking = false;
        this.fill(peer);
        return;
      case 'interested':
        peer.peerInterested = true;
        this.rechoke();
        return;
      case 'not-interested':
        peer.peerInterested = false;
        this.rechoke();
        return;
      case 'have':
        this.onHave(peer, m.index);
        return;
      case 'bitfield':
        this.onBitfield(peer, m.bits);
        return;
      case 'request':
        this.onRequest(peer, m.index, m.begin, m.length);
        return;
      case 'cancel': {
        const i = peer.uploads.findIndex((u) => u.index === m.index && u.begin === m.begin && u.length === m.length);
        if (i >= 0) peer.uploads.splice(i, 1);
        return;
      }
      default:
        return;
    }
  }

  pieceData(_peer: PeerConnection, n: number): void {
    // Counted as they arrive (a 1 MiB block on a slow link takes seconds): the stall rule's view.
    this.received += n;
  }

  bytesIn(peer: PeerConnection, n: number): void {
    // A peer still sending is not snubbing us, however slowly a big block trickles in.
    if (peer.requests.size > 0) peer.lastBlockAt = Date.now();
    const name = this.ctx.limits.download;
    if (!name || peer.throttled) return;
    if (this.ctx.throttle.takeNow(name, n)) return;
    peer.throttled = true;
    peer.socket.pause();
    this.ctx.throttle.take(name, n).then(
      () => {
        peer.throttled = false;
        if (peer.state !== 'closed') peer.socket.resume();
      },
      () => undefined,
    );
  }

  drained(peer: PeerConnection): void {
    this.fill(peer);
  }

  closed(peer: PeerConnection, reason: string): void {
    if (!this.peers.delete(peer)) return;
    if (peer.peerHas) this.picker.removeBitfield(peer.peerHas);
    for (const i of peer.revealed) this.revealCount[i]--;
    peer.revealed.clear();
    for (const [key, index] of peer.requests) {
      const job = this.jobs.get(index);
      if (job) job.requested[key % BLOCK_KEY]--;
    }
    peer.requests.clear();
    peer.requestedBytes = 0;
    const t = peer.target as BlockTarget | undefined;
    if (t) {
      // The block was cut off: what of it was counted is not progress.
      this.received -= peer.abandonedBytes;
      this.endWrite(peer, t);
    }
    if (this.reputation.isBanned(peer)) this.dropBlocksOf(peer);
    this.releaseSolo(peer);
    this.reputation.closed(peer);
    this.logger.debug({ msg: 'peer closed', infoHash: this.info.infoHash, peer: peer.address, reason });
    if (this.ended) return;
    if (this.direct.has(peer.address)) this.redialLater(peer.address);
    for (const p of this.peers) this.fill(p);
    this.rechoke();
  }

  // --- downloading -----------------------------------------------------------------------

  get superSeeding(): boolean {
    return this.ctx.superSeed && this.state === 'seeding';
  }

  /** Pieces wholly before `offset` are never requested (the caller has those bytes). */
  skipBefore(offset: number): void {
    const pieces = Math.min(this.pieceCount, Math.floor(offset / this.info.pieceLength));
    if (pieces <= this.skipPieces) return;
    this.skipPieces = pieces;
    this.missing = 0;
    for (let i = pieces; i < this.pieceCount; i++) if (!this.have.get(i)) this.missing++;
    for (const p of this.peers) p.sendWantFrom(pieces);
  }

  get wantFrom(): number {
    return this.skipPieces;
  }

  wantFromChanged(peer: PeerConnection): void {
    for (const i of peer.revealed) {
      if (i >= peer.wantFrom) continue;
      peer.revealed.delete(i);
      this.revealCount[i]--;
    }
    if (this.superSeeding) this.revealUpTo(peer);
  }

  private wanted(index: number): boolean {
    return index >= this.skipPieces && !this.have.get(index);
  }

  /** Whether piece `index` is held, being fetched (blocks in), and how many connected peers have it. */
  pieceStatus(index: number): { have: boolean; receiving: boolean; available: number } {
    const job = this.jobs.get(index);
    return {
      have: this.have.get(index),
      receiving: job !== undefined && (job.gotCount > 0 || job.state === 'writing'),
      available: this.picker.availability[index],
    };
  }

  /**
   * The owner fetched piece `index` another way (the proxy's relay, for a reader waiting on it):
   * if `data` matches the piece's SHA-1 the torrent stops fetching it from peers and writes it into
   * the file like a piece it downloaded, then holds and offers it. One writer per range: the
   * torrent. True when the piece is (or is being) held; false on a SHA-1 mismatch.
   */
  adopt(index: number, data: Buffer): boolean {
    if (this.have.get(index) || this.jobs.get(index)?.state === 'writing') return true;
    if (data.length !== this.pieceLengthOf(index)) return false;
    const expected = this.info.pieces.subarray(index * 20, index * 20 + 20);
    if (!createHash('sha1').update(data).digest().equals(expected)) return false;
    const running = this.jobs.get(index);
    if (running) this.abandonJob(running);
    const buf = this.ctx.pool.take(this.info.pieceLength);
    data.copy(buf);
    const job: PieceJob = {
      index,
      length: data.length,
      blockSize: data.length,
      blocks: 1,
      buf,
      requested: new Uint8Array(1),
      requestedAt: new Float64Array(1),
      got: new Uint8Array([1]),
      gotCount: 1,
      receiving: new Uint8Array(1),
      writers: 0,
      contributors: new Set(),
      fromProxy: 0,
      fromPeers: 0,
      suspect: false,
      solo: undefined,
      state: 'writing',
    };
    this.jobs.set(index, job);
    const write = this.writePiece(job);
    this.pendingWrites.add(write);
    void write.finally(() => this.pendingWrites.delete(write));
    return true;
  }

  /** Drops a piece being fetched from peers: their requests are cancelled, its buffer freed once no parser writes into it. */
  private abandonJob(job: PieceJob): void {
    this.jobs.delete(job.index);
    for (const p of this.peers) {
      for (const [key, i] of p.requests) {
        if (i !== job.index) continue;
        p.requests.delete(key);
        const block = key % BLOCK_KEY;
        const length = Math.min(job.blockSize, job.length - block * job.blockSize);
        p.requestedBytes -= length;
        p.write(encodeCancel(job.index, block * job.blockSize, length));
      }
    }
    // A parser may still be copying into it: then the buffer is left to the GC rather than reused.
    if (job.writers === 0) this.ctx.pool.give(job.buf);
    job.state = 'writing';
    for (const p of this.peers) this.fill(p);
  }

  private onHave(peer: PeerConnection, index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.pieceCount) {
      peer.close('have for a piece that does not exist');
      return;
    }
    if (peer.pieces().get(index)) return;
    peer.pieces().set(index);
    this.picker.addHave(index);
    if (peer.revealed.delete(index)) {
      this.revealCount[index]--;
      if (this.superSeeding) this.revealUpTo(peer);
    }
    if (this.state === 'downloading' && this.wanted(index)) {
      peer.setInterested(true);
      this.fill(peer);
    }
    this.closeIfBothComplete(peer);
  }

  private onBitfield(peer: PeerConnection, bits: Buffer): void {
    let field: Bitfield;
    try {
      field = Bitfield.from(bits, this.pieceCount);
    } catch (err) {
      peer.close(`bad bitfield: ${(err as Error).message}`);
      return;
    }
    this.picker.removeBitfield(peer.pieces());
    peer.peerHas = field;
    this.picker.addBitfield(field);
    for (const i of peer.revealed) {
      if (!field.get(i)) continue;
      peer.revealed.delete(i);
      this.revealCount[i]--;
    }
    if (this.superSeeding) this.revealUpTo(peer);
    if (this.state === 'downloading') {
      for (const i of field) {
        if (this.wanted(i)) {
          peer.setInterested(true);
          break;
        }
      }
      this.fill(peer);
    }
    this.closeIfBothComplete(peer);
  }

  /** Requests blocks from `peer` until its pipeline is full, in one write. */
  fill(peer: PeerConnection): void {
    if (this.state !== 'downloading' || this.ended || peer.state !== 'ready' || peer.peerChoking || !peer.amInterested) return;
    let batch: Buffer | undefined;
    let off = 0;
    // A fast peer (loopback, datacenter) gets a few MiB in flight; a slow one two blocks, so it does
    // not sit on pieces others could fetch meanwhile (and the endgame starts later).
    const limit = peer.downRate.rate() >= FAST_PEER_RATE ? Math.max(PIPELINE_BYTES, 2 * peer.blockSize) : 2 * peer.blockSize;
    while (peer.requestedBytes < limit && peer.requests.size < MAX_REQUESTS) {
      const next = this.nextBlock(peer);
      if (!next) break;
      const { job, block } = next;
      const begin = block * job.blockSize;
      const length = Math.min(job.blockSize, job.length - begin);
      job.requested[block]++;
      job.requestedAt[block] = Date.now();
      peer.requests.set(job.index * BLOCK_KEY + block, job.index);
      peer.requestedBytes += length;
      if (!batch || off + 17 > batch.length) {
        if (batch) peer.write(batch.subarray(0, off));
        batch = Buffer.allocUnsafe(17 * 64);
        off = 0;
      }
      off = writeRequest(batch, off, job.index, begin, length);
    }
    if (batch && off > 0) peer.write(batch.subarray(0, off));
    if (peer.requests.size === 0 && !this.wantsFrom(peer)) peer.setInterested(false);
  }

  private wantsFrom(peer: PeerConnection): boolean {
    for (const i of peer.pieces()) if (this.wanted(i)) return true;
    return false;
  }

  private nextBlock(peer: PeerConnection): { job: PieceJob; block: number } | undefined {
    const has = peer.pieces();
    // Finish pieces already started before starting new ones (fewer buffers, pieces verify sooner).
    for (const job of this.jobs.values()) {
      if (job.state !== 'fetching' || job.blockSize !== peer.blockSize || !has.get(job.index)) continue;
      if (job.solo && job.solo !== peer) continue;
      for (let b = 0; b < job.blocks; b++) {
        if (job.requested[b] !== 0 || job.got[b] !== 0) continue;
        if (job.suspect) job.solo = peer;
        return { job, block: b };
      }
    }
    if (this.missing > this.jobs.size) {
      const index = this.picker.pick(has, (i) => this.wanted(i) && !this.jobs.has(i), this.window);
      if (index >= 0) {
        const job = this.startJob(index, peer.blockSize);
        return { job, block: 0 };
      }
      return undefined;
    }
    // Endgame: every missing piece is being fetched; a peer with nothing else to do asks too for a
    // block that has been out elsewhere for a while (one at a time, and only slow ones: on a slow
    // link a 1 MiB duplicate costs a peer seconds of upload, and the loser's copy is thrown away).
    // With many peers each holding a request or two, "every missing piece is being fetched" comes
    // true early (measured at 20 agents: half the blob still missing), so the endgame also waits for
    // the last few pieces.
    if (peer.requests.size > 0 || this.missing > ENDGAME_MAX_MISSING) return undefined;
    const slowBefore = Date.now() - ENDGAME_AFTER_MS;
    for (const job of this.jobs.values()) {
      // A suspect piece is not split between peers, not even in the endgame.
      if (job.state !== 'fetching' || job.suspect || job.blockSize !== peer.blockSize || !has.get(job.index)) continue;
      for (let b = 0; b < job.blocks; b++) {
        if (
          job.got[b] === 0 &&
          job.requested[b] === 1 &&
          job.requestedAt[b] < slowBefore &&
          !peer.requests.has(job.index * BLOCK_KEY + b)
        ) {
          return { job, block: b };
        }
      }
    }
    return undefined;
  }

  private startJob(index: number, blockSize: number): PieceJob {
    const length = this.pieceLengthOf(index);
    const blocks = Math.ceil(length / blockSize);
    const job: PieceJob = {
      index,
      length,
      blockSize,
      blocks,
      buf: this.ctx.pool.take(this.info.pieceLength),
      requested: new Uint8Array(blocks),
      requestedAt: new Float64Array(blocks),
      got: new Uint8Array(blocks),
      gotCount: 0,
      receiving: new Uint8Array(blocks),
      writers: 0,
      contributors: new Set(),
      fromProxy: 0,
      fromPeers: 0,
      suspect: false,
      solo: undefined,
      state: 'fetching',
    };
    this.jobs.set(index, job);
    return job;
  }

  pieceStart(peer: PeerConnection, index: number, begin: number, length: number): { buffer: Buffer; offset: number } | undefined {
    const job = this.jobs.get(index);
    if (!job || job.state !== 'fetching' || begin % job.blockSize !== 0) {
      this.discard('not-wanted', length);
      return;
    }
    const block = begin / job.blockSize;
    if (!peer.requests.has(index * BLOCK_KEY + block)) {
      this.discard('not-requested', length);
      return;
    }
    if (job.got[block]) {
      this.discard('duplicate', length);
      return;
    }
    if (length !== Math.min(job.blockSize, job.length - begin)) {
      this.discard('not-requested', length);
      return;
    }
    if (job.receiving[block]) {
      const scratch = this.ctx.pool.take(length);
      peer.target = { job, block, scratch } satisfies BlockTarget;
      return { buffer: scratch, offset: 0 };
    }
    job.receiving[block] = 1;
    job.writers++;
    peer.target = { job, block } satisfies BlockTarget;
    return { buffer: job.buf, offset: begin };
  }

  /** A block nobody asked for (any more): its bytes are skipped, and counted (they cost a peer's upload). */
  private discard(reason: 'not-wanted' | 'not-requested' | 'duplicate', length: number): undefined {
    this.ctx.metrics?.discarded.inc({ reason }, length);
    return undefined;
  }

  pieceEnd(peer: PeerConnection, index: number, begin: number, length: number, stored: boolean): void {
    const t = peer.target as BlockTarget | undefined;
    peer.target = undefined;
    const job = this.jobs.get(index);
    const key = job ? index * BLOCK_KEY + begin / job.blockSize : -1;
    if (job && peer.requests.delete(key)) {
      peer.requestedBytes -= length;
      job.requested[key % BLOCK_KEY]--;
    }
    if (!stored || !t) {
      this.fill(peer);
      return;
    }
    const fresh = t.job.state === 'fetching' && t.job.got[t.block] === 0 && this.jobs.get(t.job.index) === t.job;
    if (fresh && t.scratch) t.scratch.copy(t.job.buf, begin);
    this.endWrite(peer, t);
    if (!fresh) {
      // Someone else's copy won (endgame) or the piece is gone: these bytes were counted for nothing.
      this.received -= length;
      return;
    }
    const j = t.job;
    j.got[t.block] = 1;
    j.gotCount++;
    j.contributors.add(peer);
    this.reputation.received(peer, index);
    peer.downloaded += length;
    const now = Date.now();
    peer.downRate.add(length, now);
    this.down.add(length, now);
    this.lastProgressAt = now;
    if (this.ctx.isProxy(peer)) j.fromProxy += length;
    else j.fromPeers += length;
    // Endgame duplicates of this block are no longer needed.
    for (const other of this.peers) {
      if (other !== peer && other.requests.delete(key)) {
        other.requestedBytes -= length;
        j.requested[t.block]--;
        other.write(encodeCancel(index, begin, length));
      }
    }
    this.maybeVerify(j);
  }

  /** A parser stopped copying into a job's buffer (block complete or connection gone). */
  private endWrite(peer: PeerConnection, t: BlockTarget): void {
    peer.target = undefined;
    if (t.scratch) {
      this.ctx.pool.give(t.scratch);
      return;
    }
    t.job.receiving[t.block] = 0;
    t.job.writers--;
    this.maybeVerify(t.job);
  }

  private maybeVerify(job: PieceJob): void {
    if (job.state !== 'fetching' || job.gotCount < job.blocks || job.writers > 0 || this.jobs.get(job.index) !== job) return;
    job.state = 'writing';
    const expected = this.info.pieces.subarray(job.index * 20, job.index * 20 + 20);
    const actual = createHash('sha1').update(job.buf.subarray(0, job.length)).digest();
    if (!actual.equals(expected)) {
      this.pieceFailed(job);
      return;
    }
    const write = this.writePiece(job);
    this.pendingWrites.add(write);
    void write.finally(() => this.pendingWrites.delete(write));
  }

  private async writePiece(job: PieceJob): Promise<void> {
    try {
      const fh = await this.fileHandle();
      let off = 0;
      while (off < job.length) {
        const { bytesWritten } = await fh.write(job.buf, off, job.length - off, job.index * this.info.pieceLength + off);
        if (bytesWritten <= 0) throw new Error('short write');
        off += bytesWritten;
      }
    } catch (err) {
      this.ctx.pool.give(job.buf);
      if (this.ended) return;
      this.logger.warn({ msg: 'cannot write piece', infoHash: this.info.infoHash, piece: job.index, reason: (err as Error).message });
      // Not awaited: close() waits for the pending writes, this one among them.
      this.close(new TorrentGoneError(`download of ${this.info.infoHash} failed: ${(err as Error).message}`)).catch((e: unknown) =>
        this.logger.warn({ msg: 'close after a failed write failed', infoHash: this.info.infoHash, reason: (e as Error).message }),
      );
      return;
    }
    this.ctx.pool.give(job.buf);
    if (this.ended) return;
    this.jobs.delete(job.index);
    this.have.set(job.index);
    this.missing--;
    this.verifiedBytes += job.length;
    // Only verified bytes are blob bytes (a liar's garbage must not show as swarm traffic).
    if (job.fromProxy) this.ctx.metrics?.addBytes('proxy', job.fromProxy);
    if (job.fromPeers) this.ctx.metrics?.addBytes('peer', job.fromPeers);
    this.reputation.verified(job.index);
    for (const p of this.peers) {
      if (p.state !== 'ready') continue;
      // Also to peers that have it: a super-seeding proxy reveals the next piece when it hears this.
      p.sendHave(job.index);
      this.closeIfBothComplete(p);
    }
    this.notify();
    if (this.have.full()) this.complete();
    for (const p of this.peers) this.fill(p);
  }

  private pieceFailed(job: PieceJob): void {
    this.logger.warn({
      msg: 'piece failed verification',
      infoHash: this.info.infoHash,
      piece: job.index,
      peer: [...job.contributors].map((p) => p.address).join(','),
    });
    this.ctx.metrics?.pieceFailures.inc();
    // Bytes that failed verification are not progress: a seed sending garbage must look stalled.
    this.received -= job.length;
    const mixed = job.contributors.size > 1;
    job.state = 'fetching';
    job.got.fill(0);
    job.gotCount = 0;
    job.contributors.clear();
    job.fromProxy = job.fromPeers = 0;
    job.solo = undefined;
    // After the reset: a ban closes the liar, and closing drops its blocks from the other jobs.
    if (mixed) {
      // Striking every sender banned honest seeds that shared pieces with a liar (measured: 3 runs
      // in 4 with 4 MiB pieces). Nobody is blamed; the piece comes from one peer next time.
      job.suspect = true;
      this.reputation.inconclusive(job.index);
    } else {
      this.reputation.failed(job.index);
    }
    for (const p of this.peers) this.fill(p);
  }

  /**
   * `peer` no longer serves the suspect pieces it had to itself (it closed, choked or went silent):
   * what it sent of them is dropped, so whoever takes them over fetches them whole, alone.
   */
  private releaseSolo(peer: PeerConnection): void {
    for (const job of this.jobs.values()) {
      if (job.solo !== peer) continue;
      job.solo = undefined;
      if (job.state !== 'fetching') continue;
      for (let b = 0; b < job.blocks; b++) {
        if (job.got[b]) this.received -= Math.min(job.blockSize, job.length - b * job.blockSize);
      }
      job.got.fill(0);
      job.gotCount = 0;
      job.contributors.clear();
      job.fromProxy = job.fromPeers = 0;
    }
  }

  /**
   * A banned peer's blocks in pieces not verified yet are garbage too: left in, they would make
   * those pieces fail once honest peers complete them, and the strikes would fall on the honest
   * peers. The whole piece is fetched again (blocks carry no hash of their own).
   */
  private dropBlocksOf(peer: PeerConnection): void {
    for (const job of this.jobs.values()) {
      if (job.state !== 'fetching' || !job.contributors.has(peer)) continue;
      for (let b = 0; b < job.blocks; b++) {
        if (job.got[b]) this.received -= Math.min(job.blockSize, job.length - b * job.blockSize);
      }
      job.got.fill(0);
      job.gotCount = 0;
      job.contributors.clear();
      job.fromProxy = job.fromPeers = 0;
    }
  }

  /** Takes back every request in flight to `peer` (it choked us, or went silent: then tell it, `cancel`). */
  private dropRequests(peer: PeerConnection, cancel = false): void {
    for (const [key, index] of peer.requests) {
      const job = this.jobs.get(index);
      if (!job) continue;
      const block = key % BLOCK_KEY;
      job.requested[block]--;
      if (cancel) peer.write(encodeCancel(index, block * job.blockSize, Math.min(job.blockSize, job.length - block * job.blockSize)));
    }
    peer.requests.clear();
    peer.requestedBytes = 0;
    this.releaseSolo(peer);
    for (const p of this.peers) if (p !== peer) this.fill(p);
  }

  private complete(): void {
    if (this.state !== 'downloading') return;
    clearInterval(this.progressTimer);
    this.ctx.metrics?.pullDuration.observe({ result: 'ok' }, (Date.now() - this.startedAt) / 1000);
    this.announcer.completed();
    this.resolveDone(this.path);
  }

  /** Turns a finished download into a seed of `path` (the cache's verified file), keeping the connections. */
  async becomeSeed(path: string): Promise<void> {
    const old = this.file;
    const oldPath = this.path;
    this.path = path;
    this.file = open(path, 'r');
    this.file.catch(() => undefined);
    await Promise.allSettled([...this.pendingWrites]);
    this.clearPieceCache();
    for (const job of this.jobs.values()) if (job.writers === 0 && job.state === 'fetching') this.ctx.pool.give(job.buf);
    this.jobs.clear();
    const wasDownloading = this.state === 'downloading';
    this.state = 'seeding';
    clearInterval(this.progressTimer);
    const added: number[] = [];
    for (let i = 0; i < this.pieceCount; i++) if (!this.have.get(i)) added.push(i);
    this.markAllHave();
    this.missing = 0;
    for (const p of this.peers) {
      if (p.state !== 'ready') continue;
      for (const i of added) if (!p.pieces().get(i)) p.sendHave(i);
      p.setInterested(false);
      p.requests.clear();
      p.requestedBytes = 0;
      this.closeIfBothComplete(p);
    }
    if (wasDownloading) {
      this.announcer.completed();
      if (!this.have.full()) this.rejectDone(new TorrentGoneError('replaced'));
      else this.resolveDone(path);
    }
    if (old && oldPath !== path) await old.then((fh) => fh.close()).catch(() => undefined);
    else if (old) await old.then((fh) => fh.close()).catch(() => undefined);
    await this.file;
    this.notify();
  }

  private markAllHave(): void {
    for (let i = 0; i < this.pieceCount; i++) this.have.set(i);
    this.verifiedBytes = this.info.length;
  }

  /** Two complete peers have nothing to trade: free the connection for others. */
  private closeIfBothComplete(peer: PeerConnection): void {
    if (this.have.full() && peer.peerHas?.full()) peer.close('both complete');
  }

  // --- readers ---------------------------------------------------------------------------

  /** Resolves at the next verified piece (or state change); rejects once the session is closed. */
  nextVerified(timeoutMs?: number): Promise<void> {
    if (this.ended) return Promise.reject(new TorrentGoneError(`torrent ${this.info.infoHash} is gone`));
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject };
      this.waiters.add(waiter);
      if (timeoutMs !== undefined) {
        setTimeout(() => {
          if (this.waiters.delete(waiter)) resolve();
        }, timeoutMs).unref();
      }
    });
  }

  /** The end of the contiguous verified bytes from `pos`. */
  storedEnd(pos: number): number {
    const pl = this.info.pieceLength;
    let end = pos;
    let piece = Math.floor(pos / pl);
    while (end < this.info.length && this.have.get(piece)) end = Math.min(++piece * pl, this.info.length);
    return end;
  }

  addReader(reader: Reader): void {
    this.readers.add(reader);
    this.updateWindow();
  }

  moveReader(): void {
    this.updateWindow();
  }

  removeReader(reader: Reader): void {
    this.readers.delete(reader);
    this.updateWindow();
  }

  private updateWindow(): void {
    let min = Infinity;
    for (const r of this.readers) min = Math.min(min, r.pos);
    if (min === Infinity || min >= this.info.length) {
      this.window = undefined;
      return;
    }
    const first = Math.floor(min / this.info.pieceLength);
    this.window = { first, last: Math.min(this.pieceCount - 1, first + focusPieces(this.pieceCount) - 1) };
  }

  private notify(): void {
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const w of waiting) w.resolve();
  }

  // --- uploading -------------------------------------------------------------------------

  private onRequest(peer: PeerConnection, index: number, begin: number, length: number): void {
    if (peer.amChoking) return;
    if (index < 0 || index >= this.pieceCount || !this.have.get(index)) return;
    if (length <= 0 || length > Math.max(peer.blockSize, 16 * 1024) || begin < 0 || begin + length > this.pieceLengthOf(index)) {
      peer.close(`invalid request ${index}:${begin}+${length}`);
      return;
    }
    if (peer.uploads.length >= MAX_QUEUED_UPLOADS) {
      peer.close('request flood');
      return;
    }
    peer.uploads.push({ index, begin, length });
    void this.pump(peer);
  }

  /** Uploads continue while the peer is ready and unchoked and the torrent open. */
  private mayServe(peer: PeerConnection): boolean {
    return peer.state === 'ready' && !peer.amChoking && !this.ended;
  }

  /** The piece file: opened when the session starts, so every piece read or write finds it. */
  private fileHandle(): Promise<FileHandle> {
    return this.file ?? Promise.reject(new Error('internal: torrent file not open'));
  }

  private async pump(peer: PeerConnection): Promise<void> {
    if (peer.uploading) return;
    peer.uploading = true;
    try {
      while (this.mayServe(peer)) {
        const r = peer.uploads.shift();
        if (!r) break;
        let piece: SharedBuffer;
        try {
          piece = await this.readPiece(r.index);
        } catch (err) {
          this.logger.warn({
            msg: 'cannot serve piece',
            infoHash: this.info.infoHash,
            piece: r.index,
            peer: peer.address,
            reason: (err as Error).message,
          });
          return;
        }
        const name = this.ctx.limits.upload;
        if (name && !this.ctx.throttle.takeNow(name, r.length)) await this.ctx.throttle.take(name, r.length);
        // Re-checked after the waits above: the peer may have gone or choked meanwhile.
        if (!this.mayServe(peer)) {
          piece.release();
          break;
        }
        const ok = peer.sendBlock(r.index, r.begin, piece.buf.subarray(r.begin, r.begin + r.length), () => piece.release());
        this.up.add(r.length);
        peer.upRate.add(r.length);
        this.ctx.metrics?.uploaded.inc(r.length);
        if (!ok) await drainOrClose(peer);
      }
    } finally {
      peer.uploading = false;
    }
  }

  /** A piece from disk, SHA-1 checked (once per cache residency), retained for the caller. */
  private async readPiece(index: number): Promise<SharedBuffer> {
    let entry = this.pieceCache.get(index);
    if (entry) {
      this.pieceCache.delete(index);
      this.pieceCache.set(index, entry);
    } else {
      entry = this.loadPiece(index);
      this.pieceCache.set(index, entry);
      entry.catch(() => this.pieceCache.get(index) === entry && this.pieceCache.delete(index));
      while (this.pieceCache.size > PIECE_CACHE) {
        const [oldest, p] = this.pieceCache.entries().next().value as [number, Promise<SharedBuffer>];
        this.pieceCache.delete(oldest);
        p.then(
          (sb) => sb.release(),
          () => undefined,
        );
      }
    }
    const sb = await entry;
    return sb.retain();
  }

  private async loadPiece(index: number): Promise<SharedBuffer> {
    const fh = await this.fileHandle();
    const length = this.pieceLengthOf(index);
    const buf = this.ctx.pool.take(this.info.pieceLength);
    const shared = new SharedBuffer(buf, this.ctx.pool);
    try {
      let off = 0;
      while (off < length) {
        const { bytesRead } = await fh.read(buf, off, length - off, index * this.info.pieceLength + off);
        if (bytesRead <= 0) throw new Error(`file ends at byte ${index * this.info.pieceLength + off}`);
        off += bytesRead;
      }
    } catch (err) {
      shared.release();
      throw err;
    }
    if (this.ctx.verifyReads) {
      const actual = createHash('sha1').update(buf.subarray(0, length)).digest();
      if (!actual.equals(this.info.pieces.subarray(index * 20, index * 20 + 20))) {
        shared.release();
        this.ctx.corrupt(this, index);
        throw new Error(`piece ${index} of ${this.path} fails SHA-1: the file is corrupt`);
      }
    }
    return shared;
  }

  private clearPieceCache(): void {
    for (const p of this.pieceCache.values())
      p.then(
        (sb) => sb.release(),
        () => undefined,
      );
    this.pieceCache.clear();
  }

  /**
   * Keeps `peer` told of enough pieces to stay busy: two, or about a second of what it takes from
   * us (a lone fast agent on a datacenter link must not wait on a have round trip per piece).
   */
  private revealUpTo(peer: PeerConnection): void {
    const target = Math.min(MAX_REVEAL_AHEAD, Math.max(SUPER_SEED_AHEAD, Math.ceil(peer.upRate.rate() / this.info.pieceLength)));
    while (peer.revealed.size < target && this.reveal(peer));
  }

  /**
   * Super-seeding: tells `peer` of one more piece, the one least present among the peers connected
   * now (held, or revealed and on its way), lowest index on ties: agents that start together get
   * different pieces to trade, and a lone agent still gets the blob in order (streaming). Counting
   * only connected peers matters: pieces handed to peers long gone must not push a newcomer's next
   * piece to the back.
   */
  private reveal(peer: PeerConnection): boolean {
    let best = -1;
    let bestScore = Infinity;
    for (let i = Math.min(peer.wantFrom, this.pieceCount); i < this.pieceCount; i++) {
      if (peer.pieces().get(i) || peer.revealed.has(i)) continue;
      const score = this.revealCount[i] + this.picker.availability[i];
      if (score < bestScore) {
        best = i;
        bestScore = score;
        if (score === 0) break;
      }
    }
    if (best < 0) return false;
    this.revealCount[best]++;
    peer.revealed.add(best);
    peer.sendHave(best);
    return true;
  }

  /** Fills free upload slots with interested peers, longest waiting first. */
  rechoke(): void {
    if (this.ended) return;
    let unchoked = 0;
    const waiting: PeerConnection[] = [];
    for (const p of this.peers) {
      if (p.state !== 'ready') continue;
      if (!p.amChoking && !p.peerInterested) p.setChoking(true);
      else if (!p.amChoking) unchoked++;
      else if (p.peerInterested) waiting.push(p);
    }
    waiting.sort((a, b) => a.chokeChangedAt - b.chokeChangedAt);
    for (const p of waiting) {
      if (unchoked >= this.ctx.uploadSlots) break;
      p.setChoking(false);
      unchoked++;
    }
  }

  /** Periodic upkeep (the client calls it every second): snubbed peers, slot rotation, keepalives, dialling. */
  tick(now: number): void {
    if (this.ended) return;
    for (const p of this.peers) {
      p.keepAlive(now, KEEPALIVE_MS);
      if (p.requests.size > 0 && now - p.lastBlockAt > SNUB_MS) {
        this.logger.debug({ msg: `peer sent nothing for ${SNUB_MS} ms; asking others`, infoHash: this.info.infoHash, peer: p.address });
        this.dropRequests(p, true);
        p.lastBlockAt = now;
      }
    }
    // In the endgame idle peers are asked for slow blocks once those have been out a while.
    if (this.state === 'downloading' && this.missing > 0 && this.missing <= Math.min(this.jobs.size, ENDGAME_MAX_MISSING)) {
      for (const p of this.peers) if (p.requests.size === 0) this.fill(p);
    }
    if (now - this.lastRotateAt >= ROTATE_MS) {
      this.lastRotateAt = now;
      this.rotate(now);
    }
  }

  /** Peers waiting for a slot get one: the longest-unchoked half of the slots turn over. */
  private rotate(now: number): void {
    const ready = [...this.peers].filter((p) => p.state === 'ready');
    const waiting = ready.filter((p) => p.amChoking && p.peerInterested).length;
    if (waiting === 0) return;
    const holders = ready
      .filter((p) => !p.amChoking && now - p.chokeChangedAt >= ROTATE_MS)
      .sort((a, b) => a.chokeChangedAt - b.chokeChangedAt);
    const turns = Math.min(waiting, Math.max(1, Math.floor(this.ctx.uploadSlots / 2)), holders.length);
    for (let i = 0; i < turns; i++) holders[i].setChoking(true);
    this.rechoke();
  }

  // --- discovery -------------------------------------------------------------------------

  private onTrackerPeers(peers: string[]): void {
    if (this.state !== 'downloading' || this.ended) return;
    for (const address of peers) this.connect(address);
  }

  private redialLater(address: string): void {
    const d = this.direct.get(address);
    if (!d || this.ended || this.state !== 'downloading' || d.timer) return;
    d.timer = setTimeout(() => {
      d.timer = undefined;
      this.connect(address);
    }, d.delayMs);
    d.timer.unref();
    d.delayMs = Math.min(d.delayMs * 2, MAX_DIRECT_RETRY_MS);
  }

  announceNow(): void {
    this.announcer.announceNow();
  }

  answeredTrackers(): number {
    return this.announcer.answered();
  }

  private startProgressLog(): void {
    this.progressTimer = setInterval(() => {
      this.logger.log({
        msg: 'pulling',
        infoHash: this.info.infoHash,
        bytes: this.verifiedBytes,
        length: this.info.length,
        rateMBps: Math.round(this.down.rate() / 1e5) / 10,
        peers: this.peers.size,
      });
    }, this.ctx.progressLogSeconds * 1000);
    this.progressTimer.unref();
  }

  // --- shutdown --------------------------------------------------------------------------

  /** Closes every connection and the file; pending readers get TorrentGoneError. */
  async close(error: Error = new TorrentGoneError(`torrent ${this.info.infoHash} is gone`)): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.progressTimer);
    for (const d of this.direct.values()) clearTimeout(d.timer);
    if (this.state === 'downloading' && !this.have.full()) {
      this.ctx.metrics?.pullDuration.observe({ result: 'aborted' }, (Date.now() - this.startedAt) / 1000);
    }
    for (const p of [...this.peers]) p.close('torrent closed');
    for (const w of this.waiters) w.reject(error);
    this.waiters.clear();
    this.rejectDone(error);
    await Promise.allSettled([...this.pendingWrites]);
    for (const job of this.jobs.values()) if (job.state === 'fetching' && job.writers === 0) this.ctx.pool.give(job.buf);
    this.jobs.clear();
    this.clearPieceCache();
    await Promise.all([this.announcer.stop(), this.file?.then((fh) => fh.close()).catch(() => undefined)]);
  }
}

/** Request keys: piece index × BLOCK_KEY + block index (a 64 MiB piece has at most 4096 16 KiB blocks). */
const BLOCK_KEY = 4096;

/**
 * Pieces in the reader's window: an eighth of the blob, 2 to 8 pieces. Two pieces kept streaming
 * tight but made agents that start together want the same next pieces at once; a wider window lets
 * rarest-first spread them over pieces they can then trade.
 */
function focusPieces(totalPieces: number): number {
  return Math.max(2, Math.min(8, Math.floor(totalPieces / 8)));
}

function drainOrClose(peer: PeerConnection): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      peer.socket.off('drain', done);
      peer.socket.off('close', done);
      resolve();
    };
    peer.socket.once('drain', done);
    peer.socket.once('close', done);
  });
}
