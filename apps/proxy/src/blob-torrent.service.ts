import { finished } from 'node:stream/promises';
import { Injectable } from '@nestjs/common';
import { BlobAccessAuthorizer, BlobSourceChain, ClientCredentials, OciError, UpstreamSet, validateDigest, validateName } from '#registry';
import { BlobSeeder, type BlobTorrent } from '#swarm';

export interface TorrentQuery {
  digest: string;
  repository: string;
  ns: string | undefined;
  authorization: string | string[] | undefined;
}

/**
 * The proxy's one job: a blob's torrent. The caller's credentials must read the blob at the origin
 * (checked even when cached); a blob not cached yet is fetched from the origin once — concurrent
 * callers share that fetch — verified, cached, then its torrent is made and seeded.
 */
@Injectable()
export class BlobTorrentService {
  constructor(
    private readonly upstreams: UpstreamSet,
    private readonly authorizer: BlobAccessAuthorizer,
    private readonly chain: BlobSourceChain,
    private readonly seeder: BlobSeeder,
  ) {}

  async torrent(query: TorrentQuery): Promise<BlobTorrent> {
    const request = {
      upstream: this.upstreams.resolve(query.ns),
      repository: validateName(query.repository),
      digest: validateDigest(query.digest),
      credentials: ClientCredentials.fromHeader(query.authorization),
    };
    const size = await this.authorizer.authorize(request);
    const opened = await this.chain.open({ ...request, size });
    if (!opened) throw new OciError(404, 'BLOB_UNKNOWN', 'blob unknown to registry', { digest: request.digest });
    try {
      // Drain a fill so the blob is verified and committed before its torrent is made.
      if (opened.source !== 'cache') await finished(opened.read().resume());
    } finally {
      opened.release();
    }
    return this.seeder.torrentFor(request.digest);
  }
}
