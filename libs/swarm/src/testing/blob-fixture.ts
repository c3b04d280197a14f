import { createHash, randomBytes } from 'node:crypto';
import { ClientCredentials, type BlobRequest } from '#registry';
import { createBlobTorrentFromPieces, pieceLengthFor } from '../torrent/blob-torrent.js';

/** A random blob with its digest, its torrent (as a proxy would make it) and a request for it. Test-only. */
export interface BlobFixture {
  data: Buffer;
  digest: string;
  hex: string;
  metainfo: Buffer;
  pieceLength: number;
  request: BlobRequest;
}

export function blobFixture(size: number): BlobFixture {
  const data = randomBytes(size);
  const hex = createHash('sha256').update(data).digest('hex');
  const pieceLength = pieceLengthFor(size);
  const hashes: Buffer[] = [];
  for (let at = 0; at < size; at += pieceLength)
    hashes.push(
      createHash('sha1')
        .update(data.subarray(at, at + pieceLength))
        .digest(),
    );
  const { metainfo } = createBlobTorrentFromPieces(hex, size, Buffer.concat(hashes), []);
  const digest = `sha256:${hex}`;
  const request: BlobRequest = {
    origin: { base: 'http://origin.invalid', host: 'origin.invalid' },
    repository: 'team/app',
    digest,
    credentials: ClientCredentials.anonymous,
    size,
  };
  return { data, digest, hex, metainfo, pieceLength, request };
}
