import createTorrent from 'create-torrent';
import parseTorrent from 'parse-torrent';
import { InvalidMetainfoError } from '../swarm.errors.js';

const MiB = 1024 * 1024;
export const MIN_PIECE_LENGTH = 4 * MiB;
export const MAX_PIECE_LENGTH = 16 * MiB;
/** Pieces a blob is cut into before the piece length grows past its minimum. */
export const TARGET_PIECES = 256;
// Creation date and creator do not change the info hash, but fixing them makes the metainfo
// bytes identical on every host too (cacheable, diffable). Not Date(0): create-torrent reads a
// zero date as "unset" and writes the current time instead.
const EPOCH = new Date(1000);
const CREATED_BY = 'p2p-image-accelerator';
const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Piece length for a blob of `size` bytes, the same on every host: the power of two nearest above
 * size/256, clamped to 4–16 MiB (≤1 GiB → 4 MiB, ≤2 GiB → 8 MiB, larger → 16 MiB). Small pieces
 * cost picker CPU, big ones memory and time to first byte (see WEBTORRENT.md).
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
      if (err) return reject(err);
      const metainfo = Buffer.from(torrent.buffer, torrent.byteOffset, torrent.byteLength);
      describeMetainfo(metainfo).then((summary) => {
        if (summary.length !== size) return reject(new InvalidMetainfoError(`${filePath} is ${summary.length} bytes, expected ${size}`));
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
  return { infoHash: parsed.infoHash, name: parsed.name, length: parsed.length, pieceLength: parsed.pieceLength, announce: parsed.announce };
}
