import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CHOKE,
  encodeBitfield,
  encodeCancel,
  encodeExtended,
  encodeHandshake,
  encodeHave,
  encodePieceHeader,
  encodeRequest,
  HANDSHAKE_LENGTH,
  INTERESTED,
  KEEPALIVE,
  MessageId,
  NOT_INTERESTED,
  PIECE_HEADER_LENGTH,
  UNCHOKE,
  WireParser,
  WireProtocolError,
  writeRequest,
  type WireHandler,
  type WireMessage,
  type WireParserOptions,
} from './wire-codec.js';

type Item =
  { kind: 'message'; message: WireMessage; unknownPayload?: Buffer } | { kind: 'piece'; index: number; begin: number; payload: Buffer };

interface Stream {
  handshake?: { reserved: Buffer; infoHash: Buffer; peerId: Buffer };
  items: Item[];
}

/** Guard bytes around each piece target: a copy outside [offset, offset + length) would clobber them. */
const PAD = 5;
const GUARD = 0xee;

/** Pieces whose index is ≡ 3 (mod 4) are discarded, so both runs of a stream decide the same way. */
const discards = (index: number): boolean => index % 4 === 3;

function record(options?: { onMessage?: (m: WireMessage, parser: WireParser) => void }) {
  const calls: unknown[] = [];
  let target: Buffer | undefined;
  let parser: WireParser | undefined;
  const handler: WireHandler = {
    handshake: (h) => calls.push(['handshake', Buffer.from(h.reserved), Buffer.from(h.infoHash), Buffer.from(h.peerId)]),
    message: (m) => {
      calls.push(['message', m]);
      options?.onMessage?.(m, parser as WireParser);
    },
    pieceStart: (index, begin, length) => {
      calls.push(['pieceStart', index, begin, length]);
      if (discards(index)) return undefined;
      target = Buffer.alloc(length + 2 * PAD, GUARD);
      return { buffer: target, offset: PAD };
    },
    pieceEnd: (index, begin, length, stored) => {
      // base64 keeps deep equality on 64 KiB payloads cheap.
      let bytes: string | undefined;
      if (stored) {
        const t = target as Buffer;
        expect(t.subarray(0, PAD).every((b) => b === GUARD)).toBe(true);
        expect(t.subarray(PAD + length).every((b) => b === GUARD)).toBe(true);
        bytes = t.toString('base64', PAD, PAD + length);
      }
      target = undefined;
      calls.push(['pieceEnd', index, begin, length, stored, bytes]);
    },
  };
  return {
    calls,
    handler,
    attach(p: WireParser) {
      parser = p;
      return p;
    },
  };
}

function encodeItem(item: Item): Buffer[] {
  if (item.kind === 'piece') return [encodePieceHeader(item.index, item.begin, item.payload.length), item.payload];
  const m = item.message;
  switch (m.type) {
    case 'keepalive':
      return [KEEPALIVE];
    case 'choke':
      return [CHOKE];
    case 'unchoke':
      return [UNCHOKE];
    case 'interested':
      return [INTERESTED];
    case 'not-interested':
      return [NOT_INTERESTED];
    case 'have':
      return [encodeHave(m.index)];
    case 'bitfield':
      return [encodeBitfield(m.bits)];
    case 'request':
      return [encodeRequest(m.index, m.begin, m.length)];
    case 'cancel':
      return [encodeCancel(m.index, m.begin, m.length)];
    case 'extended':
      return [encodeExtended(m.id, m.payload)];
    case 'unknown': {
      const header = Buffer.alloc(5);
      header.writeUInt32BE(1 + m.length, 0);
      header[4] = m.id;
      return [header, item.unknownPayload as Buffer];
    }
  }
}

function encodeStream(stream: Stream): Buffer {
  const parts: Buffer[] = [];
  if (stream.handshake) parts.push(encodeHandshake(stream.handshake.infoHash, stream.handshake.peerId, stream.handshake.reserved));
  for (const item of stream.items) parts.push(...encodeItem(item));
  return Buffer.concat(parts);
}

/** The calls a correct parser makes for `stream`, derived from the model rather than from a parse. */
function expectedCalls(stream: Stream): unknown[] {
  const calls: unknown[] = [];
  if (stream.handshake) {
    const h = stream.handshake;
    calls.push(['handshake', h.reserved, h.infoHash, h.peerId]);
  }
  for (const item of stream.items) {
    if (item.kind === 'message') {
      calls.push(['message', item.message]);
      continue;
    }
    const { index, begin, payload } = item;
    const stored = !discards(index);
    calls.push(['pieceStart', index, begin, payload.length]);
    calls.push(['pieceEnd', index, begin, payload.length, stored, stored ? payload.toString('base64') : undefined]);
  }
  return calls;
}

/**
 * Pushes `data` cut at `cuts`; each chunk is a private copy that is scribbled over after push, so
 * a parser that kept a view of a chunk (instead of copying) would deliver garbage.
 */
function parse(data: Buffer, cuts: number[], options: WireParserOptions): unknown[] {
  const rec = record();
  const parser = rec.attach(new WireParser(rec.handler, options));
  let from = 0;
  for (const cut of [...cuts, data.length]) {
    const chunk = Buffer.from(data.subarray(from, cut));
    parser.push(chunk);
    chunk.fill(0x55);
    from = cut;
  }
  return rec.calls;
}

function pseudoRandomBytes(length: number, seed: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[i] = x & 0xff;
  }
  return buf;
}

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const smallBytes = (maxLength: number) => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));
const knownIds = new Set<number>(Object.values(MessageId));
const unknownId = fc.integer({ min: 0, max: 255 }).filter((id) => !knownIds.has(id));

function itemArb(maxPiece: number): fc.Arbitrary<Item> {
  const message = (m: fc.Arbitrary<WireMessage>): fc.Arbitrary<Item> => m.map((message) => ({ kind: 'message', message }));
  // Unbiased lengths: fast-check would otherwise favour tiny payloads and rarely cross a chunk.
  const bigPayload = fc
    .tuple(fc.noBias(fc.integer({ min: 0, max: maxPiece })), fc.integer())
    .map(([n, seed]) => pseudoRandomBytes(n, seed));
  const piece = fc
    .tuple(u32, u32, fc.oneof(smallBytes(Math.min(64, maxPiece)), { arbitrary: bigPayload, weight: 2 }))
    .map(([index, begin, payload]): Item => ({ kind: 'piece', index, begin, payload }));
  const bare = fc.constantFrom<WireMessage>(
    { type: 'keepalive' },
    { type: 'choke' },
    { type: 'unchoke' },
    { type: 'interested' },
    { type: 'not-interested' },
  );
  const requestLike = fc
    .tuple(fc.constantFrom('request' as const, 'cancel' as const), u32, u32, u32)
    .map(([type, index, begin, length]): WireMessage => ({ type, index, begin, length }));
  const unknown = fc
    .tuple(unknownId, smallBytes(100))
    .map(([id, payload]): Item => ({ kind: 'message', message: { type: 'unknown', id, length: payload.length }, unknownPayload: payload }));
  return fc.oneof(
    message(bare),
    message(u32.map((index) => ({ type: 'have', index }))),
    message(smallBytes(200).map((bits) => ({ type: 'bitfield', bits }))),
    message(requestLike),
    message(fc.tuple(fc.integer({ min: 0, max: 255 }), smallBytes(300)).map(([id, payload]) => ({ type: 'extended', id, payload }))),
    unknown,
    { arbitrary: piece, weight: 4 },
  );
}

function streamArb(maxPiece: number, maxItems: number): fc.Arbitrary<Stream> {
  const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n }).map((a) => Buffer.from(a));
  const handshake = fc.record({ reserved: bytes(8), infoHash: bytes(20), peerId: bytes(20) });
  return fc.record({
    handshake: fc.option(handshake, { nil: undefined }),
    items: fc.array(itemArb(maxPiece), { maxLength: maxItems, size: 'max' }),
  });
}

const optionsFor = (stream: Stream): WireParserOptions => ({ expectHandshake: stream.handshake !== undefined });

describe(WireParser.name, () => {
  it('delivers the same calls and piece bytes however the stream is split', () => {
    fc.assert(
      fc.property(streamArb(64 * 1024, 20), fc.array(fc.nat(), { maxLength: 40, size: 'max' }), (stream, rawCuts) => {
        const data = encodeStream(stream);
        const cuts = [...new Set(rawCuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
        const whole = parse(data, [], optionsFor(stream));
        expect(whole).toEqual(expectedCalls(stream));
        expect(parse(data, cuts, optionsFor(stream))).toEqual(whole);
      }),
      { numRuns: 300 },
    );
  });

  it('delivers the same calls when fed 1 to 3 bytes at a time', () => {
    fc.assert(
      fc.property(streamArb(2048, 12), fc.integer({ min: 1, max: 3 }), (stream, step) => {
        const data = encodeStream(stream);
        const cuts: number[] = [];
        for (let at = step; at < data.length; at += step) cuts.push(at);
        expect(parse(data, cuts, optionsFor(stream))).toEqual(expectedCalls(stream));
      }),
      { numRuns: 150 },
    );
  });

  it('copies a 64 KiB piece fed one byte at a time into the target', () => {
    const payload = pseudoRandomBytes(64 * 1024, 7);
    const data = Buffer.concat([encodePieceHeader(2, 16384, payload.length), payload, encodeHave(9)]);
    const cuts = Array.from({ length: data.length - 1 }, (_, i) => i + 1);
    expect(parse(data, cuts, { expectHandshake: false })).toEqual([
      ['pieceStart', 2, 16384, payload.length],
      ['pieceEnd', 2, 16384, payload.length, true, payload.toString('base64')],
      ['message', { type: 'have', index: 9 }],
    ]);
  });

  it('skips discarded pieces without disturbing the messages after them', () => {
    const payload = pseudoRandomBytes(5000, 3);
    const data = Buffer.concat([
      encodePieceHeader(3, 0, payload.length),
      payload,
      encodeHave(1),
      encodePieceHeader(4, 0, 10),
      payload.subarray(0, 10),
    ]);
    for (const cuts of [[], [7, 13, 14, 2000, 5013, 5015]]) {
      expect(parse(data, cuts, { expectHandshake: false })).toEqual([
        ['pieceStart', 3, 0, 5000],
        ['pieceEnd', 3, 0, 5000, false, undefined],
        ['message', { type: 'have', index: 1 }],
        ['pieceStart', 4, 0, 10],
        ['pieceEnd', 4, 0, 10, true, payload.toString('base64', 0, 10)],
      ]);
    }
  });

  it('hands out bitfield, extended and handshake buffers that outlive the chunk', () => {
    const rec = record();
    const parser = new WireParser(rec.handler);
    const infoHash = Buffer.alloc(20, 1);
    const peerId = Buffer.alloc(20, 2);
    const chunk = Buffer.concat([
      encodeHandshake(infoHash, peerId),
      encodeBitfield(Buffer.from([0xf0])),
      encodeExtended(0, Buffer.from('d1:ei0ee')),
    ]);
    parser.push(chunk);
    chunk.fill(0);
    const [, bitfield, extended] = rec.calls as [unknown, [string, WireMessage], [string, WireMessage]];
    expect(bitfield[1]).toEqual({ type: 'bitfield', bits: Buffer.from([0xf0]) });
    expect(extended[1]).toEqual({ type: 'extended', id: 0, payload: Buffer.from('d1:ei0ee') });
  });

  it('reports payload bytes copied into a piece target as they arrive, and how many of the piece in progress', () => {
    const stored: number[] = [];
    let take = true;
    const parser = new WireParser(
      {
        handshake() {},
        message() {},
        pieceStart: (_i, _b, length) => (take ? { buffer: Buffer.alloc(length), offset: 0 } : undefined),
        pieceEnd() {},
        pieceData: (n) => stored.push(n),
      },
      { expectHandshake: false },
    );
    const payload = pseudoRandomBytes(1000, 5);
    const data = Buffer.concat([encodePieceHeader(0, 0, 1000), payload]);
    parser.push(data.subarray(0, 13 + 300));
    expect(parser.pieceStored).toBe(300);
    parser.push(data.subarray(13 + 300, 13 + 700));
    expect(parser.pieceStored).toBe(700);
    parser.push(data.subarray(13 + 700));
    expect(parser.pieceStored).toBe(0);
    expect(stored).toEqual([300, 400, 300]);
    // A discarded piece (no target) is neither reported nor counted in progress.
    take = false;
    parser.push(data.subarray(0, 500));
    expect(parser.pieceStored).toBe(0);
    expect(stored).toEqual([300, 400, 300]);
  });

  it('rejects a piece target too small for the payload', () => {
    const parser = new WireParser(
      { handshake() {}, message() {}, pieceStart: () => ({ buffer: Buffer.alloc(10), offset: 2 }), pieceEnd() {} },
      { expectHandshake: false },
    );
    expect(() => parser.push(Buffer.concat([encodePieceHeader(0, 0, 9), Buffer.alloc(9)]))).toThrow(RangeError);
  });

  describe('malformed input', () => {
    const headerOnly = (length: number, id: number, extra = 0) => {
      const buf = Buffer.alloc(5 + extra);
      buf.writeUInt32BE(length, 0);
      buf[4] = id;
      return buf;
    };
    const cases: [string, Buffer, WireParserOptions][] = [
      ['a bad pstrlen', Buffer.concat([Buffer.from([18]), Buffer.alloc(67)]), {}],
      ['a bad pstr', Buffer.concat([Buffer.from([19]), Buffer.from('BitTorrent protocoX'), Buffer.alloc(48)]), {}],
      ['a length prefix above the maximum', headerOnly(101, 20, 100), { expectHandshake: false, maxMessageLength: 100 }],
      ['an unknown message above the maximum', headerOnly(101, 99), { expectHandshake: false, maxMessageLength: 100 }],
      ['a bitfield above the maximum', headerOnly(101, MessageId.bitfield), { expectHandshake: false, maxMessageLength: 100 }],
      ['a length prefix beyond any message (before the id arrives)', Buffer.from([0xff, 0xff, 0xff, 0xff]), { expectHandshake: false }],
      ['a have of 3 bytes', Buffer.concat([headerOnly(4, MessageId.have), Buffer.alloc(3)]), { expectHandshake: false }],
      ['a have of 5 bytes', headerOnly(6, MessageId.have, 5), { expectHandshake: false }],
      ['a request of 11 bytes', headerOnly(12, MessageId.request, 11), { expectHandshake: false }],
      ['a cancel of 13 bytes', headerOnly(14, MessageId.cancel, 13), { expectHandshake: false }],
      ['a choke with a payload', headerOnly(2, MessageId.choke, 1), { expectHandshake: false }],
      ['a piece shorter than its header', headerOnly(8, MessageId.piece, 7), { expectHandshake: false }],
      ['an extended message without its id', headerOnly(1, MessageId.extended), { expectHandshake: false }],
      ['a piece longer than maxBlockLength', encodePieceHeader(0, 0, 16385), { expectHandshake: false, maxBlockLength: 16384 }],
    ];
    it.each(cases)('throws WireProtocolError on %s, whole or byte by byte', (_, data, options) => {
      const whole = new WireParser(record().handler, options);
      expect(() => whole.push(data)).toThrow(WireProtocolError);
      const bytewise = new WireParser(record().handler, options);
      expect(() => {
        for (let i = 0; i < data.length; i++) bytewise.push(data.subarray(i, i + 1));
      }).toThrow(WireProtocolError);
    });

    it('names the error and goes quiet after it', () => {
      const rec = record();
      const parser = new WireParser(rec.handler, { expectHandshake: false });
      let error: unknown;
      try {
        parser.push(headerOnly(2, MessageId.unchoke, 1));
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(WireProtocolError);
      expect((error as Error).name).toBe('WireProtocolError');
      parser.push(encodeHave(1));
      expect(rec.calls).toEqual([]);
    });

    it('accepts a piece of exactly maxBlockLength', () => {
      const data = Buffer.concat([encodePieceHeader(0, 0, 16384), Buffer.alloc(16384, 1)]);
      expect(parse(data, [], { expectHandshake: false, maxBlockLength: 16384 })).toHaveLength(2);
    });
  });

  describe('stop()', () => {
    const data = Buffer.concat([encodeHave(1), encodeHave(2), encodePieceHeader(0, 0, 4), Buffer.alloc(4), encodeHave(3)]);

    it('from message() ends delivery in this and later pushes', () => {
      const rec = record({ onMessage: (m, parser) => m.type === 'have' && m.index === 1 && parser.stop() });
      const parser = rec.attach(new WireParser(rec.handler, { expectHandshake: false }));
      parser.push(data);
      parser.push(encodeHave(4));
      expect(rec.calls).toEqual([['message', { type: 'have', index: 1 }]]);
    });

    it('from pieceStart() skips pieceEnd and everything after', () => {
      const calls: string[] = [];
      const parser: WireParser = new WireParser(
        {
          handshake() {},
          message: (m) => calls.push(m.type),
          pieceStart: () => {
            calls.push('pieceStart');
            parser.stop();
            return { buffer: Buffer.alloc(4), offset: 0 };
          },
          pieceEnd: () => calls.push('pieceEnd'),
        },
        { expectHandshake: false },
      );
      parser.push(data);
      expect(calls).toEqual(['have', 'have', 'pieceStart']);
    });

    it('from pieceEnd() ends delivery', () => {
      const calls: string[] = [];
      const parser: WireParser = new WireParser(
        {
          handshake() {},
          message: (m) => calls.push(m.type),
          pieceStart: () => undefined,
          pieceEnd: () => {
            calls.push('pieceEnd');
            parser.stop();
          },
        },
        { expectHandshake: false },
      );
      parser.push(data);
      expect(calls).toEqual(['have', 'have', 'pieceEnd']);
    });

    it('from handshake() ends delivery', () => {
      const calls: string[] = [];
      const parser: WireParser = new WireParser({
        handshake: () => {
          calls.push('handshake');
          parser.stop();
        },
        message: (m) => calls.push(m.type),
        pieceStart: () => undefined,
        pieceEnd: () => calls.push('pieceEnd'),
      });
      parser.push(Buffer.concat([encodeHandshake(Buffer.alloc(20), Buffer.alloc(20)), data]));
      expect(calls).toEqual(['handshake']);
    });
  });
});

describe('encoders', () => {
  it('lays out the handshake as BEP 3 says', () => {
    const reserved = Buffer.from([0, 0, 0, 0, 0, 0x10, 0, 0]);
    const h = encodeHandshake(Buffer.alloc(20, 0xaa), Buffer.alloc(20, 0xbb), reserved);
    expect(h).toHaveLength(HANDSHAKE_LENGTH);
    expect(h[0]).toBe(19);
    expect(h.subarray(1, 20).toString('latin1')).toBe('BitTorrent protocol');
    expect(h.subarray(20, 28)).toEqual(reserved);
    expect(h.subarray(28, 48)).toEqual(Buffer.alloc(20, 0xaa));
    expect(h.subarray(48)).toEqual(Buffer.alloc(20, 0xbb));
    expect(encodeHandshake(Buffer.alloc(20), Buffer.alloc(20)).subarray(20, 28)).toEqual(Buffer.alloc(8));
    expect(() => encodeHandshake(Buffer.alloc(19), Buffer.alloc(20))).toThrow(RangeError);
  });

  it('encodes fixed messages byte for byte', () => {
    expect(KEEPALIVE).toEqual(Buffer.from([0, 0, 0, 0]));
    expect(CHOKE).toEqual(Buffer.from([0, 0, 0, 1, 0]));
    expect(NOT_INTERESTED).toEqual(Buffer.from([0, 0, 0, 1, 3]));
    expect(encodeHave(0x01020304)).toEqual(Buffer.from([0, 0, 0, 5, 4, 1, 2, 3, 4]));
    expect(encodeRequest(1, 2, 3)).toEqual(Buffer.from([0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]));
    expect(encodeCancel(1, 2, 3)[4]).toBe(8);
    expect(encodeBitfield(new Uint8Array([0x80, 0x01]))).toEqual(Buffer.from([0, 0, 0, 3, 5, 0x80, 0x01]));
    expect(encodeExtended(3, new Uint8Array([9]))).toEqual(Buffer.from([0, 0, 0, 3, 20, 3, 9]));
    const header = encodePieceHeader(7, 16384, 16384);
    expect(header).toHaveLength(PIECE_HEADER_LENGTH);
    expect(header).toEqual(Buffer.from([0, 0, 0x40, 9, 7, 0, 0, 0, 7, 0, 0, 0x40, 0]));
  });

  it('batches requests and cancels into one buffer with writeRequest', () => {
    const batch = Buffer.alloc(3 * 17);
    let at = writeRequest(batch, 0, 1, 0, 16384);
    at = writeRequest(batch, at, 1, 16384, 16384);
    at = writeRequest(batch, at, 0, 0, 16384, 8);
    expect(at).toBe(batch.length);
    expect(parse(batch, [], { expectHandshake: false })).toEqual([
      ['message', { type: 'request', index: 1, begin: 0, length: 16384 }],
      ['message', { type: 'request', index: 1, begin: 16384, length: 16384 }],
      ['message', { type: 'cancel', index: 0, begin: 0, length: 16384 }],
    ]);
  });
});
