import type { Socket } from 'node:net';
import bencode from 'bencode';
import { Bitfield } from './bitfield.js';
import { RateMeter } from './rate-meter.js';
import { AUTH_EXTENSION, AUTH_NONCE_LENGTH, newNonce, authProof, proofMatches, type ConnectionSide } from './peer-auth.js';
import {
  CHOKE,
  encodeBitfield,
  encodeExtended,
  encodeHandshake,
  encodeHave,
  encodePieceHeader,
  EXTENDED_HANDSHAKE_ID,
  INTERESTED,
  KEEPALIVE,
  NOT_INTERESTED,
  UNCHOKE,
  WireParser,
  WireProtocolError,
  type Handshake,
  type WireHandler,
  type WireMessage,
} from './wire-codec.js';

/** Largest block we ask for and serve between our own peers (negotiated in the extended handshake). */
const MAX_BLOCK = 1024 * 1024;
/** Block size with a peer that does not say it takes bigger ones (BEP 3 convention). */
const DEFAULT_BLOCK = 16 * 1024;
/** Our local ids for our extensions (BEP 10: the receiver's `m` numbers the messages it accepts). */
const AUTH_EXT_ID = 1;
const WANT_FROM_EXT_ID = 2;
const WANT_FROM_EXTENSION = 'p2p_want_from';
const RESERVED = (() => {
  const r = Buffer.alloc(8);
  r[5] |= 0x10; // BEP 10 extension protocol
  return r;
})();

/** What the connection needs from the torrent it belongs to. */
export interface PeerSessionLink {
  readonly infoHash: Buffer;
  readonly pieceCount: number;
  readonly token: string;
  readonly localId: Buffer;
  /** The first piece we want (pieces before it came another way, e.g. the relay). */
  readonly wantFrom: number;
  /** The peer said it wants no piece before `peer.wantFrom` (a super-seed reveals nothing there). */
  wantFromChanged(peer: PeerConnection): void;
  /** The peer proved the token: it may now see our pieces. */
  authenticated(peer: PeerConnection): void;
  message(peer: PeerConnection, m: WireMessage): void;
  pieceStart(peer: PeerConnection, index: number, begin: number, length: number): { buffer: Buffer; offset: number } | undefined;
  pieceEnd(peer: PeerConnection, index: number, begin: number, length: number, stored: boolean): void;
  /** Called after each socket chunk was parsed (batch request writes here). */
  drained(peer: PeerConnection): void;
  /** Bytes arrived on the socket (download throttle). */
  bytesIn(peer: PeerConnection, n: number): void;
  /** `n` payload bytes were copied into the block `pieceStart` gave (progress, as a block streams in). */
  pieceData(peer: PeerConnection, n: number): void;
  closed(peer: PeerConnection, reason: string): void;
}

export type PeerState = 'handshake' | 'auth' | 'ready' | 'closed';

/**
 * One BitTorrent connection: BEP 3 framing, our BEP 10 authentication, and per-peer state the
 * torrent reads (choke/interest flags, the peer's pieces, requests in flight). Nothing but the
 * handshake and the auth exchange is accepted or sent until both sides proved the swarm token.
 */
export class PeerConnection implements WireHandler {
  state: PeerState = 'handshake';
  remoteId: Buffer | undefined;
  remoteIdHex = '';
  /** `ip:port` of the remote end. */
  readonly address: string;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Negotiated block size (both sides' maximum). */
  blockSize = DEFAULT_BLOCK;
  amChoking = true;
  amInterested = false;
  peerChoking = true;
  peerInterested = false;
  peerHas: Bitfield | undefined;
  /** Requests we sent and have no answer for: key → piece index. */
  readonly requests = new Map<number, number>();
  requestedBytes = 0;
  /** Requests the peer sent us, served in order. */
  readonly uploads: { index: number; begin: number; length: number }[] = [];
  uploading = false;
  downloaded = 0;
  uploaded = 0;
  /** Piece bytes received from this peer per second (how much to ask of it at once). */
  readonly downRate = new RateMeter();
  /** Piece bytes sent to this peer per second (how many pieces a super-seed shows it at once). */
  readonly upRate = new RateMeter();
  /** Epoch ms of the last piece payload received (snub detection). */
  lastBlockAt = Date.now();
  /** Epoch ms the choke state last changed (fair rotation of upload slots). */
  chokeChangedAt = Date.now();
  /** The first piece the peer wants (it has the bytes before from elsewhere). */
  wantFrom = 0;
  /** Super-seeding: pieces we revealed to this peer that it does not have yet. */
  readonly revealed = new Set<number>();
  /** The block this peer's parser is copying into right now (owned by the torrent session). */
  target: unknown;
  /** Reading paused by the download throttle. */
  throttled = false;
  /** Payload bytes of a block cut off by close() (copied into the torrent's buffer, never completed). */
  abandonedBytes = 0;
  private readonly parser: WireParser;
  private link: PeerSessionLink | undefined;
  private readonly nonce = newNonce();
  private remoteNonce: Buffer | undefined;
  private remoteAuthId = 0;
  private remoteWantFromId = 0;
  private proofSent = false;
  private proofOk = false;
  private authTimer: NodeJS.Timeout | undefined;
  private lastWriteAt = Date.now();

  constructor(
    readonly socket: Socket,
    readonly side: ConnectionSide,
    /** For an accepted connection: finds the torrent named in the peer's handshake (undefined = refuse). */
    private readonly route: (infoHash: Buffer, peer: PeerConnection) => PeerSessionLink | undefined,
    authTimeoutMs: number,
    /** For an outgoing connection: the address dialled (the socket does not know it before it connects). */
    dialled?: { host: string; port: number },
  ) {
    this.remoteAddress = dialled?.host ?? socket.remoteAddress ?? '';
    this.remotePort = dialled?.port ?? socket.remotePort ?? 0;
    this.address = `${this.remoteAddress.includes(':') ? `[${this.remoteAddress}]` : this.remoteAddress}:${this.remotePort}`;
    this.parser = new WireParser(this, { maxBlockLength: MAX_BLOCK, maxMessageLength: 1024 * 1024 });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.close(err.message));
    socket.on('close', () => this.close('connection closed'));
    this.authTimer = setTimeout(() => this.close('did not authenticate in time'), authTimeoutMs);
    this.authTimer.unref();
  }

  /** Outgoing connection: we speak first. */
  start(link: PeerSessionLink): void {
    this.link = link;
    this.write(encodeHandshake(link.infoHash, link.localId, RESERVED));
  }

  get authenticated(): boolean {
    return this.state === 'ready';
  }

  /** Remote peer id as hex once the handshake is in (PeerReputation keys on it). */
  get peerId(): string | null {
    return this.remoteIdHex || null;
  }

  // --- WireHandler -------------------------------------------------------------------------

  handshake(h: Handshake): void {
    if (this.side === 'acceptor') {
      const link = this.route(h.infoHash, this);
      if (!link) {
        this.close('unknown info hash');
        return;
      }
      this.link = link;
    } else if (!h.infoHash.equals(this.session().infoHash)) {
      this.close('wrong info hash');
      return;
    }
    const link = this.session();
    if (h.peerId.equals(link.localId)) {
      this.close('connected to ourselves');
      return;
    }
    if ((h.reserved[5] & 0x10) === 0) {
      this.close('peer does not speak the extension protocol (no authentication)');
      return;
    }
    this.remoteId = Buffer.from(h.peerId);
    this.remoteIdHex = this.remoteId.toString('hex');
    if (this.side === 'acceptor') this.write(encodeHandshake(link.infoHash, link.localId, RESERVED));
    this.state = 'auth';
    const ext = {
      m: { [AUTH_EXTENSION]: AUTH_EXT_ID, [WANT_FROM_EXTENSION]: WANT_FROM_EXT_ID },
      p2p_nonce: this.nonce,
      p2p_bs: MAX_BLOCK,
      p2p_want_from: link.wantFrom,
      v: 'p2p-image-accelerator',
    };
    this.write(encodeExtended(EXTENDED_HANDSHAKE_ID, bencode.encode(ext)));
  }

  message(m: WireMessage): void {
    if (this.state === 'ready') {
      if (m.type === 'keepalive') return;
      if (m.type === 'extended') {
        if (m.id === WANT_FROM_EXT_ID && m.payload.length === 4) {
          this.wantFrom = m.payload.readUInt32BE(0);
          this.session().wantFromChanged(this);
        }
        return;
      }
      this.session().message(this, m);
      return;
    }
    if (m.type === 'keepalive') return;
    if (m.type !== 'extended') {
      this.close(`sent ${m.type} before authenticating`);
      return;
    }
    if (m.id === EXTENDED_HANDSHAKE_ID) {
      this.onExtendedHandshake(m.payload);
      return;
    }
    if (m.id === AUTH_EXT_ID) {
      this.onProof(m.payload);
      return;
    }
    this.close('unexpected extension message before authenticating');
  }

  pieceStart(index: number, begin: number, length: number): { buffer: Buffer; offset: number } | undefined {
    if (this.state !== 'ready') {
      this.close('sent a piece before authenticating');
      return undefined;
    }
    return this.session().pieceStart(this, index, begin, length);
  }

  pieceEnd(index: number, begin: number, length: number, stored: boolean): void {
    this.lastBlockAt = Date.now();
    this.session().pieceEnd(this, index, begin, length, stored);
  }

  pieceData(length: number): void {
    this.session().pieceData(this, length);
  }

  // --- sending ---------------------------------------------------------------------------

  write(buf: Buffer): boolean {
    if (this.state === 'closed') return false;
    this.lastWriteAt = Date.now();
    return this.socket.write(buf);
  }

  sendBitfield(bits: Bitfield): void {
    this.write(encodeBitfield(bits.toBuffer()));
  }

  sendHave(index: number): void {
    this.write(encodeHave(index));
  }

  setChoking(choking: boolean): void {
    if (this.amChoking === choking) return;
    this.amChoking = choking;
    this.chokeChangedAt = Date.now();
    // BEP 3: a choke discards the requests the peer queued with us.
    if (choking) this.uploads.length = 0;
    this.write(choking ? CHOKE : UNCHOKE);
  }

  setInterested(interested: boolean): void {
    if (this.amInterested === interested) return;
    this.amInterested = interested;
    this.write(interested ? INTERESTED : NOT_INTERESTED);
  }

  /** Header and payload in one corked write; `done` once the socket is finished with the payload. */
  sendBlock(index: number, begin: number, payload: Buffer, done: () => void): boolean {
    if (this.state === 'closed') {
      done();
      return false;
    }
    this.lastWriteAt = Date.now();
    this.socket.cork();
    this.socket.write(encodePieceHeader(index, begin, payload.length));
    const ok = this.socket.write(payload, () => done());
    this.socket.uncork();
    this.uploaded += payload.length;
    return ok;
  }

  /** Tells the peer the first piece we still want (after a relay delivered the ones before). */
  sendWantFrom(piece: number): void {
    if (this.state !== 'ready' || this.remoteWantFromId === 0) return;
    const payload = Buffer.allocUnsafe(4);
    payload.writeUInt32BE(piece, 0);
    this.write(encodeExtended(this.remoteWantFromId, payload));
  }

  /** A keepalive when nothing was written for a while (idle peers are not dropped by the other side). */
  keepAlive(now: number, everyMs: number): void {
    if (this.state === 'ready' && now - this.lastWriteAt > everyMs) this.write(KEEPALIVE);
  }

  close(reason: string): void {
    if (this.state === 'closed') return;
    const link = this.link;
    this.state = 'closed';
    clearTimeout(this.authTimer);
    this.abandonedBytes = this.parser.pieceStored;
    this.parser.stop();
    this.socket.destroy();
    if (link) link.closed(this, reason);
  }

  // --- internals -------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    try {
      this.parser.push(chunk);
    } catch (err) {
      if (err instanceof WireProtocolError) {
        this.close(`protocol error: ${err.message}`);
        return;
      }
      throw err;
    }
    if (this.state === 'ready') {
      this.session().bytesIn(this, chunk.length);
      this.session().drained(this);
    }
  }

  private onExtendedHandshake(payload: Buffer): void {
    let dict: Record<string, unknown>;
    try {
      dict = bencode.decode(payload) as Record<string, unknown>;
    } catch {
      this.close('malformed extended handshake');
      return;
    }
    const m = dict['m'] as Record<string, unknown> | undefined;
    const id = m?.[AUTH_EXTENSION];
    const nonce = dict['p2p_nonce'];
    if (typeof id !== 'number' || !Number.isInteger(id) || id <= 0 || id > 255) {
      this.close('peer does not authenticate');
      return;
    }
    if (!(nonce instanceof Uint8Array) || nonce.length !== AUTH_NONCE_LENGTH) {
      this.close('peer sent no valid nonce');
      return;
    }
    if (Buffer.from(nonce).equals(this.nonce)) {
      this.close('peer echoed our nonce');
      return;
    }
    const bs = dict['p2p_bs'];
    this.blockSize = typeof bs === 'number' && Number.isInteger(bs) && bs >= DEFAULT_BLOCK ? Math.min(bs, MAX_BLOCK) : DEFAULT_BLOCK;
    this.remoteAuthId = id;
    const want = dict['p2p_want_from'];
    this.wantFrom = typeof want === 'number' && Number.isSafeInteger(want) && want >= 0 ? want : 0;
    const wantId = m?.[WANT_FROM_EXTENSION];
    this.remoteWantFromId = typeof wantId === 'number' && Number.isInteger(wantId) && wantId > 0 && wantId <= 255 ? wantId : 0;
    this.remoteNonce = Buffer.from(nonce);
    const link = this.session();
    const proof = authProof(link.token, {
      infoHash: link.infoHash,
      senderId: link.localId,
      senderNonce: this.nonce,
      senderSide: this.side,
      receiverId: this.remotePeerId(),
      receiverNonce: this.remoteNonce,
    });
    this.write(encodeExtended(this.remoteAuthId, proof));
    this.proofSent = true;
    this.maybeReady();
  }

  private onProof(payload: Buffer): void {
    if (!this.remoteNonce) {
      this.close('proof before the extended handshake');
      return;
    }
    const link = this.session();
    const ok = proofMatches(
      link.token,
      {
        infoHash: link.infoHash,
        senderId: this.remotePeerId(),
        senderNonce: this.remoteNonce,
        senderSide: this.side === 'initiator' ? 'acceptor' : 'initiator',
        receiverId: link.localId,
        receiverNonce: this.nonce,
      },
      payload,
    );
    if (!ok) {
      this.close('wrong swarm token proof');
      return;
    }
    this.proofOk = true;
    this.maybeReady();
  }

  /** The peer's pieces: known from the moment it is ready (before, the session sends it no work). */
  pieces(): Bitfield {
    if (!this.peerHas) throw new Error('internal: piece map of a peer that is not ready');
    return this.peerHas;
  }

  /** The torrent this connection serves: known from start() (initiator) or the handshake (acceptor) on. */
  private session(): PeerSessionLink {
    if (!this.link) throw new Error('internal: peer message handled before its torrent is known');
    return this.link;
  }

  /** The remote peer id: known once the handshake is in, before any extended message. */
  remotePeerId(): Buffer {
    if (!this.remoteId) throw new Error('internal: authentication before the handshake');
    return this.remoteId;
  }

  private maybeReady(): void {
    if (!this.proofSent || !this.proofOk || this.state !== 'auth') return;
    this.state = 'ready';
    clearTimeout(this.authTimer);
    this.peerHas = new Bitfield(this.session().pieceCount);
    this.session().authenticated(this);
  }
}
