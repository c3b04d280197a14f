import { createHash } from 'node:crypto';
import bencode, { type BencodeValue } from 'bencode';
import createTorrent from 'create-torrent';
import parseTorrent from 'parse-torrent';
import { InvalidMetainfoError } from '../swarm.errors.js';

const MiB = 1024 * 1024;
const MIN_PIECE_LENGTH = MiB;
const MAX_PIECE_LENGTH = 16 * MiB;
/** Pieces a blob is cut into before the piece length grows past its minimum. */
const TARGET_PIECES = 256;
// Creation date and creator do not change the info hash, but fixing them makes the metainfo
// bytes identical on every host too (cacheable, diffable). Not Date(0): create-torrent reads a
// zero date as "unset" and writes the current time instead.
const EPOCH = new Date(1000);
const CREATED_BY = 'p2p-image-accelerator';
const HEX64 = /^[0-9a-f]{64}$/;
const SHA1_LENGTH = 20;
/** Piece lengths accepted from elsewhere: wider than `pieceLengthFor` makes, still bounded for memory. */
const MIN_ACCEPTED_PIECE_LENGTH = 16 * 1024;
const MAX_ACCEPTED_PIECE_LENGTH = 64 * MiB;

/**
 * Piece length for a blob of `size` bytes, the same on every host: the power of two nearest above
 * size/256, clamped to 1–16 MiB (≤256 MiB → 1 MiB, ≤512 MiB → 2 MiB, ≤1 GiB → 4 MiB, ≤2 GiB →
 * 8 MiB, larger → 16 MiB). A peer can pass a piece on only once it holds all of it, so on slow
 * links big pieces make a swarm slow to start (measured: 4 MiB pieces of a 64 MB layer at 1 MB/s
 * took 16 s or more to reach a second agent); our engine's cost per piece is one SHA-1 digest,
 * one write and one `have` per peer, so small pieces are cheap (webtorrent's picker was not).
 */
export function pieceLengthFor(size: number): number {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`invalid blob size ${size}`);
  let length = MIN_PIECE_LENGTH;
  while (length < MAX_PIECE_LENGTH && length * TARGET_PIECES < size) length *= 2;
  return length;
}

export interface BlobTorrent {
  /** Bencoded .torrent (what the proxy serves). */
  metainfo: Buffer;
  infoHash: string;
}

export interface MetainfoSummary {
  infoHash: string;
  /** The blob's sha256 hex (torrents are named after it). */
  name: string;
  length: number;
  pieceLength: number;
  announce: string[];
}

/**
 * Deterministic single-file torrent for a verified blob: name = digest hex, private, piece length
 * from `pieceLengthFor(size)`, only the given announce URLs. Same bytes → same info hash anywhere.
 * The file's basename must be `digestHex` (webtorrent finds seeded data by the torrent name).
 */
export function createBlobTorrent(filePath: string, digestHex: string, size: number, announce: string[]): Promise<BlobTorrent> {
  if (!HEX64.test(digestHex)) throw new InvalidMetainfoError(`torrent name must be a sha256 hex digest, got ${digestHex}`);
  const opts = {
    name: digestHex,
    pieceLength: pieceLengthFor(size),
    private: true,
    // An explicit (even empty) list keeps create-torrent from writing in public trackers.
    announceList: announce.map((url) => [url]),
    creationDate: EPOCH,
    createdBy: CREATED_BY,
  };
  return new Promise((resolve, reject) => {
    createTorrent(filePath, opts, (err, torrent) => {
      if (err) {
        reject(err);
        return;
      }
      const metainfo = Buffer.from(torrent.buffer, torrent.byteOffset, torrent.byteLength);
      describeMetainfo(metainfo).then((summary) => {
        if (summary.length !== size) {
          reject(new InvalidMetainfoError(`${filePath} is ${summary.length} bytes, expected ${size}`));
          return;
        }
        resolve({ metainfo, infoHash: summary.infoHash });
      }, reject);
    });
  });
}

/** Parses and checks metainfo received from elsewhere: one file, named by a sha256 hex. */
export async function describeMetainfo(metainfo: Uint8Array): Promise<MetainfoSummary> {
  let parsed;
  try {
    parsed = await parseTorrent(metainfo);
  } catch (err) {
    throw new InvalidMetainfoError(`not a torrent: ${(err as Error).message}`);
  }
  if (parsed.files.length !== 1) throw new InvalidMetainfoError('blob torrents have exactly one file');
  if (!HEX64.test(parsed.name)) throw new InvalidMetainfoError(`torrent name is not a sha256 hex digest: ${parsed.name}`);
  return {
    infoHash: parsed.infoHash,
    name: parsed.name,
    length: parsed.length,
    pieceLength: parsed.pieceLength,
    announce: parsed.announce,
  };
}

/**
 * The same torrent as `createBlobTorrent` (byte for byte, so the same info hash) from piece hashes
 * computed elsewhere — by a `PieceHasher` that saw the bytes while the blob was fetched — so the
 * file is not read again. `pieces` is the concatenated SHA-1s for `pieceLengthFor(size)`.
 * The metainfo mirrors what create-torrent writes for these options (its key set and values).
 */
export function createBlobTorrentFromPieces(digestHex: string, size: number, pieces: Buffer, announce: string[]): BlobTorrent {
  if (!HEX64.test(digestHex)) throw new InvalidMetainfoError(`torrent name must be a sha256 hex digest, got ${digestHex}`);
  const pieceLength = pieceLengthFor(size);
  const expected = pieceCount(size, pieceLength) * SHA1_LENGTH;
  if (pieces.length !== expected)
    throw new InvalidMetainfoError(`${pieces.length} bytes of piece hashes for ${size} B, expected ${expected}`);
  const info = { length: size, name: digestHex, 'piece length': pieceLength, pieces, private: 1 };
  const torrent: Record<string, unknown> = {
    'created by': CREATED_BY,
    // create-torrent's rounding of the creation date to seconds.
    'creation date': Math.ceil(EPOCH.getTime() / 1000),
    encoding: 'UTF-8',
    info,
  };
  if (announce.length > 0) {
    torrent.announce = announce[0];
    torrent['announce-list'] = announce.map((url) => [url]);
  }
  const metainfo = Buffer.from(bencode.encode(torrent));
  return { metainfo, infoHash: createHash('sha1').update(bencode.encode(info)).digest('hex') };
}

export interface BlobMetainfo {
  infoHash: string;
  infoHashBuf: Buffer;
  /** The blob's sha256 hex. */
  name: string;
  length: number;
  pieceLength: number;
  /** Concatenated 20-byte SHA-1s, one per piece. */
  pieces: Buffer;
}

/**
 * Synchronous, strict parse of a blob torrent received from elsewhere: one file named by a sha256
 * hex, a safe length, a power-of-two piece length of 16 KiB–64 MiB and exactly one SHA-1 per piece.
 * An empty blob (length 0) is accepted with no pieces, as `createBlobTorrent` makes it; there is
 * then nothing to transfer. The info hash is the SHA-1 of the info dict as it appears in the
 * metainfo: a non-canonical encoding (whose re-encoding would hash differently) is rejected.
 */
export function parseBlobMetainfo(metainfo: Uint8Array): BlobMetainfo {
  let decoded: BencodeValue | null;
  try {
    decoded = bencode.decode(metainfo);
  } catch (err) {
    throw new InvalidMetainfoError(`not a torrent: ${(err as Error).message}`);
  }
  const info = field(dictOf(decoded, 'metainfo'), 'info');
  const dict = dictOf(info, 'info');
  if (field(dict, 'files') !== undefined) throw new InvalidMetainfoError('blob torrents have exactly one file');
  const nameBytes = field(dict, 'name');
  const name =
    nameBytes instanceof Uint8Array ? Buffer.from(nameBytes.buffer, nameBytes.byteOffset, nameBytes.byteLength).toString('latin1') : '';
  if (!HEX64.test(name)) throw new InvalidMetainfoError('torrent name is not a sha256 hex digest');
  const length = field(dict, 'length');
  if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0)
    throw new InvalidMetainfoError(`invalid length ${describeInt(length)}`);
  const pieceLength = field(dict, 'piece length');
  if (
    typeof pieceLength !== 'number' ||
    !Number.isSafeInteger(pieceLength) ||
    pieceLength < MIN_ACCEPTED_PIECE_LENGTH ||
    pieceLength > MAX_ACCEPTED_PIECE_LENGTH ||
    (pieceLength & (pieceLength - 1)) !== 0
  ) {
    throw new InvalidMetainfoError(`invalid piece length ${describeInt(pieceLength)}`);
  }
  const pieces = field(dict, 'pieces');
  const expected = pieceCount(length, pieceLength) * SHA1_LENGTH;
  if (!(pieces instanceof Uint8Array) || pieces.length !== expected) {
    throw new InvalidMetainfoError(`pieces must be ${expected} bytes for ${length} B in ${pieceLength} B pieces`);
  }
  const infoBytes = Buffer.from(bencode.encode(info));
  if (Buffer.from(metainfo.buffer, metainfo.byteOffset, metainfo.byteLength).indexOf(infoBytes) < 0) {
    throw new InvalidMetainfoError('info dict is not canonically bencoded');
  }
  const infoHashBuf = createHash('sha1').update(infoBytes).digest();
  return {
    infoHash: infoHashBuf.toString('hex'),
    infoHashBuf,
    name,
    length,
    pieceLength,
    pieces: Buffer.from(pieces.buffer, pieces.byteOffset, pieces.byteLength),
  };
}

function pieceCount(length: number, pieceLength: number): number {
  return Math.ceil(length / pieceLength);
}

type BencodeDict = { [key: string]: BencodeValue };

function dictOf(value: BencodeValue | null | undefined, what: string): BencodeDict {
  if (value === null || value === undefined || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) {
    throw new InvalidMetainfoError(`${what} is not a dictionary`);
  }
  return value;
}

/** Own keys only: a decoded `__proto__` key must not stand in for a missing field. */
function field(dict: BencodeDict, key: string): BencodeValue | undefined {
  return Object.hasOwn(dict, key) ? dict[key] : undefined;
}

function describeInt(value: BencodeValue | undefined): string {
  return typeof value === 'number' ? String(value) : value === undefined ? 'missing' : 'not an integer';
}
