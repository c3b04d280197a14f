/**
 * BitTorrent peer wire framing (BEP 3, plus the BEP 10 extended message envelope).
 *
 * The parser is incremental and never joins socket chunks: it keeps a read offset into the chunk
 * being pushed, gathers split headers in a 17-byte scratch buffer, and copies piece payloads once,
 * straight from the chunk into the buffer the handler names (a pooled piece buffer). Re-joining the
 * receive buffer on every chunk, as bittorrent-protocol does, was ~20 % of the agent's CPU.
 */

export const HANDSHAKE_LENGTH = 68;
export const PIECE_HEADER_LENGTH = 13;
export const EXTENDED_HANDSHAKE_ID = 0;

export const MessageId = {
  choke: 0,
  unchoke: 1,
  interested: 2,
  notInterested: 3,
  have: 4,
  bitfield: 5,
  request: 6,
  piece: 7,
  cancel: 8,
  extended: 20,
} as const;

export class WireProtocolError extends Error {
  override name = 'WireProtocolError';
}

export interface Handshake {
  reserved: Buffer;
  infoHash: Buffer;
  peerId: Buffer;
}

export type WireMessage =
  | { type: 'keepalive' }
  | { type: 'choke' }
  | { type: 'unchoke' }
  | { type: 'interested' }
  | { type: 'not-interested' }
  | { type: 'have'; index: number }
  /** `bits` is the parser's own copy (safe to keep). */
  | { type: 'bitfield'; bits: Buffer }
  | { type: 'request'; index: number; begin: number; length: number }
  | { type: 'cancel'; index: number; begin: number; length: number }
  /** `payload` is the parser's own copy (safe to keep). */
  | { type: 'extended'; id: number; payload: Buffer }
  /** `length` = payload bytes after the id; they were skipped, not buffered. */
  | { type: 'unknown'; id: number; length: number };

export interface WireHandler {
  handshake(h: Handshake): void;
  message(m: WireMessage): void;
  /** A piece message starts: where its `length` payload bytes go (buffer + offset), or undefined to discard them. */
  pieceStart(index: number, begin: number, length: number): { buffer: Buffer; offset: number } | undefined;
  /** The piece message's payload has been fully delivered (copied into the target when `stored`, else discarded). */
  pieceEnd(index: number, begin: number, length: number, stored: boolean): void;
  /** `length` more payload bytes of the current piece message were copied into its target (as they arrive). */
  pieceData?(length: number): void;
}

export interface WireParserOptions {
  /** The stream starts with a 68-byte handshake (default true). */
  expectHandshake?: boolean;
  /** Largest message (length prefix) accepted except piece messages; default 1 MiB. */
  maxMessageLength?: number;
  /** Largest piece payload accepted; default 1 MiB. */
  maxBlockLength?: number;
}

const PSTR = 'BitTorrent protocol';
/** pstrlen + pstr: the first 20 bytes every handshake must start with. */
const HANDSHAKE_PREFIX = Buffer.concat([Buffer.from([PSTR.length]), Buffer.from(PSTR, 'latin1')]);
const DEFAULT_MAX = 1024 * 1024;
/** 4 len + 1 id + 12 (request/cancel fields): the longest fixed header. */
const SCRATCH_LENGTH = 17;
const REQUEST_LENGTH = 17;

const ST_HANDSHAKE = 0;
const ST_HEADER = 1;
const ST_PIECE = 2;
const ST_BODY = 3;
const ST_SKIP = 4;

// Payload-less messages carry no data, so one frozen object each spares an allocation per message.
const KEEPALIVE_MSG: WireMessage = Object.freeze({ type: 'keepalive' });
const CHOKE_MSG: WireMessage = Object.freeze({ type: 'choke' });
const UNCHOKE_MSG: WireMessage = Object.freeze({ type: 'unchoke' });
const INTERESTED_MSG: WireMessage = Object.freeze({ type: 'interested' });
const NOT_INTERESTED_MSG: WireMessage = Object.freeze({ type: 'not-interested' });
const EMPTY = Buffer.alloc(0);

export class WireParser {
  private readonly maxMessageLength: number;
  private readonly maxBlockLength: number;
  /** No message may have a larger length prefix; lets a bogus prefix fail before its id arrives. */
  private readonly maxAnyLength: number;
  private state: number;
  private stopped = false;

  private readonly scratch = Buffer.allocUnsafe(SCRATCH_LENGTH);
  private scratchLength = 0;

  /** Handshake or bitfield/extended payload, allocated once at its known length. */
  private body: Buffer | undefined;
  private bodyFilled = 0;
  /** Message id the body belongs to; for extended, `extendedId` is the BEP 10 id. */
  private bodyId = 0;
  private extendedId = 0;

  /** Bytes still to come of the piece payload or of the skipped unknown payload. */
  private remaining = 0;
  private pieceIndex = 0;
  private pieceBegin = 0;
  private pieceLength = 0;
  private pieceTarget: Buffer | undefined;
  private pieceTargetOffset = 0;
  private unknownId = 0;
  private unknownLength = 0;

  constructor(
    private readonly handler: WireHandler,
    options: WireParserOptions = {},
  ) {
    this.maxMessageLength = options.maxMessageLength ?? DEFAULT_MAX;
    this.maxBlockLength = options.maxBlockLength ?? DEFAULT_MAX;
    this.maxAnyLength = Math.max(this.maxMessageLength, this.maxBlockLength + 9);
    this.state = (options.expectHandshake ?? true) ? ST_HANDSHAKE : ST_HEADER;
  }

  /**
   * Parses `chunk`, calling the handler synchronously for each complete message. Keeps no
   * reference to `chunk` after returning. Throws WireProtocolError on malformed input; after any
   * throw (the handler's too) the stream position is lost, so the parser stops for good.
   */
  push(chunk: Buffer): void {
    if (this.stopped) return;
    try {
      this.parse(chunk);
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  /** Payload bytes of the piece message in progress already copied into its target (0 when none or discarded). */
  get pieceStored(): number {
    return this.state === ST_PIECE && this.pieceTarget !== undefined ? this.pieceLength - this.remaining : 0;
  }

  /** Makes the current and every later push return at once (the connection is being closed from a handler). */
  stop(): void {
    this.stopped = true;
    this.body = undefined;
    this.pieceTarget = undefined;
  }

  private parse(chunk: Buffer): void {
    const end = chunk.length;
    let pos = 0;
    while (pos < end) {
      switch (this.state) {
        case ST_HEADER: {
          const available = end - pos;
          let need: number;
          if (this.scratchLength === 0 && (need = this.headerLength(chunk, pos, available)) <= available) {
            this.dispatchHeader(chunk, pos);
            pos += need;
          } else {
            // The header is split across chunks: gather it in scratch. `need` only grows as more
            // of it is known (length prefix → id → fixed fields), so fill until it is met.
            for (;;) {
              need = this.headerLength(this.scratch, 0, this.scratchLength);
              if (this.scratchLength >= need) break;
              if (pos === end) return;
              const take = Math.min(need - this.scratchLength, end - pos);
              chunk.copy(this.scratch, this.scratchLength, pos, pos + take);
              this.scratchLength += take;
              pos += take;
            }
            this.scratchLength = 0;
            this.dispatchHeader(this.scratch, 0);
          }
          break;
        }
        case ST_PIECE: {
          const take = Math.min(this.remaining, end - pos);
          if (this.pieceTarget !== undefined) {
            const at = this.pieceTargetOffset + this.pieceLength - this.remaining;
            chunk.copy(this.pieceTarget, at, pos, pos + take);
            this.handler.pieceData?.(take);
          }
          pos += take;
          this.remaining -= take;
          if (this.remaining === 0) this.endPiece();
          break;
        }
        case ST_BODY: {
          const body = this.body as Buffer;
          const take = Math.min(body.length - this.bodyFilled, end - pos);
          chunk.copy(body, this.bodyFilled, pos, pos + take);
          if (this.bodyId === -1) this.checkPstr(body, this.bodyFilled, this.bodyFilled + take);
          pos += take;
          this.bodyFilled += take;
          if (this.bodyFilled === body.length) this.endBody(body);
          break;
        }
        case ST_SKIP: {
          const take = Math.min(this.remaining, end - pos);
          pos += take;
          this.remaining -= take;
          if (this.remaining === 0) {
            this.state = ST_HEADER;
            this.handler.message({ type: 'unknown', id: this.unknownId, length: this.unknownLength });
          }
          break;
        }
        case ST_HANDSHAKE: {
          this.body = Buffer.allocUnsafe(HANDSHAKE_LENGTH);
          this.bodyFilled = 0;
          this.bodyId = -1;
          this.state = ST_BODY;
          break;
        }
      }
      if (this.stopped) return;
    }
  }

  /**
   * How many header bytes the message at `at` needs before its payload, as far as the `available`
   * bytes tell; validates the length prefix against the id as soon as both are known.
   */
  private headerLength(buf: Buffer, at: number, available: number): number {
    if (available < 4) return 4;
    const length = buf.readUInt32BE(at);
    if (length === 0) return 4;
    if (length > this.maxAnyLength) throw new WireProtocolError(`message length ${length} exceeds the maximum`);
    if (available < 5) return 5;
    const id = buf[at + 4];
    switch (id) {
      case MessageId.choke:
      case MessageId.unchoke:
      case MessageId.interested:
      case MessageId.notInterested:
        if (length !== 1) throw wrongLength(id, length);
        return 5;
      case MessageId.have:
        if (length !== 5) throw wrongLength(id, length);
        return 9;
      case MessageId.request:
      case MessageId.cancel:
        if (length !== 13) throw wrongLength(id, length);
        return 17;
      case MessageId.piece:
        if (length < 9) throw wrongLength(id, length);
        if (length - 9 > this.maxBlockLength) {
          throw new WireProtocolError(`piece block of ${length - 9} bytes exceeds ${this.maxBlockLength}`);
        }
        return PIECE_HEADER_LENGTH;
      case MessageId.extended:
        if (length < 2) throw wrongLength(id, length);
        this.checkMessageLength(id, length);
        return 6;
      default:
        this.checkMessageLength(id, length);
        return 5;
    }
  }

  private checkMessageLength(id: number, length: number): void {
    if (length > this.maxMessageLength) {
      throw new WireProtocolError(`message ${id} of ${length} bytes exceeds ${this.maxMessageLength}`);
    }
  }

  /** Acts on a complete, validated header starting at `at` of `buf`. */
  private dispatchHeader(buf: Buffer, at: number): void {
    const length = buf.readUInt32BE(at);
    if (length === 0) {
      this.handler.message(KEEPALIVE_MSG);
      return;
    }
    const id = buf[at + 4];
    switch (id) {
      case MessageId.choke:
        this.handler.message(CHOKE_MSG);
        return;
      case MessageId.unchoke:
        this.handler.message(UNCHOKE_MSG);
        return;
      case MessageId.interested:
        this.handler.message(INTERESTED_MSG);
        return;
      case MessageId.notInterested:
        this.handler.message(NOT_INTERESTED_MSG);
        return;
      case MessageId.have:
        this.handler.message({ type: 'have', index: buf.readUInt32BE(at + 5) });
        return;
      case MessageId.request:
      case MessageId.cancel:
        this.handler.message({
          type: id === MessageId.request ? 'request' : 'cancel',
          index: buf.readUInt32BE(at + 5),
          begin: buf.readUInt32BE(at + 9),
          length: buf.readUInt32BE(at + 13),
        });
        return;
      case MessageId.piece:
        this.startPiece(buf.readUInt32BE(at + 5), buf.readUInt32BE(at + 9), length - 9);
        return;
      case MessageId.bitfield:
        this.startBody(id, length - 1);
        return;
      case MessageId.extended:
        this.extendedId = buf[at + 5];
        this.startBody(id, length - 2);
        return;
      default:
        this.unknownId = id;
        this.unknownLength = length - 1;
        this.remaining = length - 1;
        if (this.remaining === 0) this.handler.message({ type: 'unknown', id, length: 0 });
        else this.state = ST_SKIP;
    }
  }

  private startPiece(index: number, begin: number, length: number): void {
    this.pieceIndex = index;
    this.pieceBegin = begin;
    this.pieceLength = length;
    this.remaining = length;
    const target = this.handler.pieceStart(index, begin, length);
    if (this.stopped) return;
    if (target !== undefined) {
      // A short target would make chunk.copy truncate silently and corrupt the piece.
      if (target.offset < 0 || target.offset + length > target.buffer.length) {
        throw new RangeError(`piece target [${target.offset}, +${length}) outside a ${target.buffer.length}-byte buffer`);
      }
      this.pieceTarget = target.buffer;
      this.pieceTargetOffset = target.offset;
    }
    if (length === 0) this.endPiece();
    else this.state = ST_PIECE;
  }

  private endPiece(): void {
    const stored = this.pieceTarget !== undefined;
    // Dropped before the callback so the pooled buffer is not pinned by an idle parser.
    this.pieceTarget = undefined;
    this.state = ST_HEADER;
    this.handler.pieceEnd(this.pieceIndex, this.pieceBegin, this.pieceLength, stored);
  }

  private startBody(id: number, length: number): void {
    this.bodyId = id;
    if (length === 0) {
      this.endBody(EMPTY);
      return;
    }
    this.body = Buffer.allocUnsafe(length);
    this.bodyFilled = 0;
    this.state = ST_BODY;
  }

  private endBody(body: Buffer): void {
    this.body = undefined;
    this.state = ST_HEADER;
    if (this.bodyId === -1) {
      this.handler.handshake({ reserved: body.subarray(20, 28), infoHash: body.subarray(28, 48), peerId: body.subarray(48, 68) });
    } else if (this.bodyId === MessageId.bitfield) {
      this.handler.message({ type: 'bitfield', bits: body });
    } else {
      this.handler.message({ type: 'extended', id: this.extendedId, payload: body });
    }
  }

  /** Checks handshake bytes [from, to) against pstrlen + pstr as they arrive, so garbage fails early. */
  private checkPstr(body: Buffer, from: number, to: number): void {
    const end = Math.min(to, HANDSHAKE_PREFIX.length);
    if (from < end && body.compare(HANDSHAKE_PREFIX, from, end, from, end) !== 0) {
      throw new WireProtocolError('not a BitTorrent handshake (bad pstrlen/pstr)');
    }
  }
}

function wrongLength(id: number, length: number): WireProtocolError {
  return new WireProtocolError(`message ${id} with length prefix ${length}`);
}

export function encodeHandshake(infoHash: Buffer, peerId: Buffer, reserved?: Buffer): Buffer {
  if (infoHash.length !== 20 || peerId.length !== 20 || (reserved !== undefined && reserved.length !== 8)) {
    throw new RangeError('handshake needs a 20-byte info hash, a 20-byte peer id and 8 reserved bytes');
  }
  const buf = Buffer.alloc(HANDSHAKE_LENGTH);
  HANDSHAKE_PREFIX.copy(buf, 0);
  if (reserved !== undefined) reserved.copy(buf, 20);
  infoHash.copy(buf, 28);
  peerId.copy(buf, 48);
  return buf;
}

function bare(id: number): Buffer {
  const buf = Buffer.alloc(5);
  buf.writeUInt32BE(1, 0);
  buf[4] = id;
  return buf;
}

export const KEEPALIVE: Buffer = Buffer.alloc(4);
export const CHOKE: Buffer = bare(MessageId.choke);
export const UNCHOKE: Buffer = bare(MessageId.unchoke);
export const INTERESTED: Buffer = bare(MessageId.interested);
export const NOT_INTERESTED: Buffer = bare(MessageId.notInterested);

export function encodeHave(index: number): Buffer {
  const buf = Buffer.allocUnsafe(9);
  buf.writeUInt32BE(5, 0);
  buf[4] = MessageId.have;
  buf.writeUInt32BE(index, 5);
  return buf;
}

export function encodeBitfield(bits: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(5 + bits.length);
  buf.writeUInt32BE(1 + bits.length, 0);
  buf[4] = MessageId.bitfield;
  buf.set(bits, 5);
  return buf;
}

export function encodeRequest(index: number, begin: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(REQUEST_LENGTH);
  writeRequest(buf, 0, index, begin, length, MessageId.request);
  return buf;
}

export function encodeCancel(index: number, begin: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(REQUEST_LENGTH);
  writeRequest(buf, 0, index, begin, length, MessageId.cancel);
  return buf;
}

/** Writes a 17-byte request (or cancel with id 8) at `offset` of `target` (for batching many requests into one write); returns offset + 17. */
export function writeRequest(
  target: Buffer,
  offset: number,
  index: number,
  begin: number,
  length: number,
  id: 6 | 8 = MessageId.request,
): number {
  target.writeUInt32BE(13, offset);
  target[offset + 4] = id;
  target.writeUInt32BE(index, offset + 5);
  target.writeUInt32BE(begin, offset + 9);
  target.writeUInt32BE(length, offset + 13);
  return offset + REQUEST_LENGTH;
}

/** The 13-byte header of a piece message carrying `length` payload bytes (payload is written separately, e.g. writev). */
export function encodePieceHeader(index: number, begin: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(PIECE_HEADER_LENGTH);
  buf.writeUInt32BE(9 + length, 0);
  buf[4] = MessageId.piece;
  buf.writeUInt32BE(index, 5);
  buf.writeUInt32BE(begin, 9);
  return buf;
}

export function encodeExtended(id: number, payload: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(6 + payload.length);
  buf.writeUInt32BE(2 + payload.length, 0);
  buf[4] = MessageId.extended;
  buf[5] = id;
  buf.set(payload, 6);
  return buf;
}
