import type { BlobRequest, FillObserver } from '#registry';
import type { BlobSeeder } from '../seeding/blob-seeder.js';
import { PieceHasher } from '../torrent/piece-hasher.js';
import { pieceLengthFor } from '../torrent/blob-torrent.js';

/**
 * The proxy's fill observer: SHA-1s every piece while the origin fill streams through, and hands
 * them to the seeder once the blob is verified and committed, so its torrent needs no second pass
 * over the file. A failed fill hands nothing over: its hashes go with the observer.
 */
export function hashPiecesInto(seeder: BlobSeeder): (request: BlobRequest, size: number) => FillObserver {
  return (request, size) => {
    const hasher = new PieceHasher(size, pieceLengthFor(size));
    return {
      data: hasher.data,
      // A miscount would be the fill's bug; the seeder then hashes the file rather than this throwing into the fill.
      committed: () => {
        if (hasher.bytesSeen === size) seeder.offerPieces(request.digest, hasher.digest());
      },
    };
  };
}
