import { finished } from 'node:stream/promises';
import { Injectable } from '@nestjs/common';
import {
  BlobAccessAuthorizer,
  BlobSourceChain,
  ClientCredentials,
  OciError,
  parseRange,
  UpstreamSet,
  validateDigest,
  validateName,
  type ByteRange,
  type OpenedBlob,
} from '#registry';
import { BlobSeeder, type BlobTorrent } from '#swarm';

/** Blob bytes for the relay: `opened` must be released once the response is over. */
export interface RelayedBlob {
  opened: OpenedBlob;
  range: ByteRange | undefined;
  /** Whole blob size. */
  size: number;
}

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
 * While that first fetch runs (no torrent can exist before the last byte: piece hashes need every
 * piece), `relay()` streams the bytes as they arrive to agents, so a cold pull starts at once.
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
    const { request, opened } = await this.open(query);
    try {
      // Drain a fill so the blob is verified and committed before its torrent is made.
      if (opened.source !== 'cache') await finished(opened.read().resume());
    } finally {
      opened.release();
    }
    return this.seeder.torrentFor(request.digest);
  }

  /**
   * The blob's bytes (from the cache, or tailing the one origin fetch while it runs), authorised
   * like `torrent()`; `rangeHeader` as in HTTP (`bytes=N-`). Joining a running fetch starts no new one.
   */
  async relay(query: TorrentQuery, rangeHeader: string | undefined): Promise<RelayedBlob> {
    const { opened } = await this.open(query);
    try {
      return { opened, range: parseRange(rangeHeader, opened.size), size: opened.size };
    } catch (err) {
      opened.release();
      throw err;
    }
  }

  private async open(query: TorrentQuery) {
    const request = {
      upstream: this.upstreams.resolve(query.ns),
      repository: validateName(query.repository),
      digest: validateDigest(query.digest),
      credentials: ClientCredentials.fromHeader(query.authorization),
    };
    const size = await this.authorizer.authorize(request);
    const opened = await this.chain.open({ ...request, size });
    if (!opened) throw new OciError(404, 'BLOB_UNKNOWN', 'blob unknown to registry', { digest: request.digest });
    return { request, opened };
  }
}
