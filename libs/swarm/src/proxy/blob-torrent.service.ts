import type { Readable } from 'node:stream';
import { Injectable, Logger } from '@nestjs/common';
import {
  BlobAccessAuthorizer,
  BlobSourceChain,
  ClientCredentials,
  OciError,
  parseRange,
  OriginSet,
  validateDigest,
  validateName,
  type ByteRange,
  type OpenedBlob,
} from '#registry';
import { BlobSeeder } from '../seeding/blob-seeder.js';
import type { BlobTorrent } from '../torrent/blob-torrent.js';
import { blobFailure } from './proxy.errors.js';

/** Blob bytes for the relay: `opened` must be released once the response is over. */
export interface RelayedBlob {
  opened: OpenedBlob;
  /** The requested bytes; its first bytes are already there (or it is empty). */
  stream: Readable;
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
  private readonly logger = new Logger(BlobTorrentService.name);

  constructor(
    private readonly origins: OriginSet,
    private readonly authorizer: BlobAccessAuthorizer,
    private readonly chain: BlobSourceChain,
    private readonly seeder: BlobSeeder,
  ) {}

  async torrent(query: TorrentQuery): Promise<BlobTorrent> {
    const { request, opened } = await this.open(query);
    try {
      // A fill must be verified and committed before its torrent is made; this read serves nobody,
      // so it counts no served bytes (it used to count as relay traffic: 1.2–1.7× the blob per cold fill).
      await opened.drain();
    } catch (err) {
      throw this.failed(request.digest, 'torrent', err);
    } finally {
      opened.release();
    }
    return this.seeder.torrentFor(request.digest);
  }

  /**
   * The blob's bytes (from the cache, or tailing the one origin fetch while it runs), authorised
   * like `torrent()`; `rangeHeader` as in HTTP (`bytes=N-`). Joining a running fetch starts no new one.
   * Resolves once the first requested bytes are there: a fill that fails before (origin refuses or
   * drops at once) is answered as a typed error status instead of a 206 followed by a cut.
   */
  async relay(query: TorrentQuery, rangeHeader: string | undefined): Promise<RelayedBlob> {
    const { request, opened } = await this.open(query);
    let stream: Readable | undefined;
    try {
      const range = parseRange(rangeHeader, opened.size);
      stream = opened.read(range);
      await firstBytes(stream);
      return { opened, stream, range, size: opened.size };
    } catch (err) {
      stream?.destroy();
      opened.release();
      throw this.failed(request.digest, 'relay', err);
    }
  }

  /** `err` as a typed OCI error; failures of the blob's fill get one log line (no stack: they are the origin's). */
  private failed(digest: string, what: string, err: unknown): OciError {
    const typed = blobFailure(err, digest);
    if (typed !== err)
      this.logger.warn({ msg: `${what} failed`, digest, status: typed.status, reason: err instanceof Error ? err.message : String(err) });
    return typed;
  }

  private async open(query: TorrentQuery) {
    const request = {
      origin: this.origins.resolve(query.ns),
      repository: validateName(query.repository),
      digest: validateDigest(query.digest),
      credentials: ClientCredentials.fromHeader(query.authorization),
    };
    const size = await this.authorizer.authorize(request);
    let opened: OpenedBlob | undefined;
    try {
      opened = await this.chain.open({ ...request, size });
    } catch (err) {
      // Without a size from the origin's HEAD, opening waits for the fill to learn it, and may fail with it.
      throw this.failed(request.digest, 'fill', err);
    }
    if (!opened) throw new OciError(404, 'BLOB_UNKNOWN', 'blob unknown to registry', { digest: request.digest });
    return { request, opened };
  }
}

/** Resolves once `stream` has bytes to read or has ended; rejects with its error. */
function firstBytes(stream: Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = (err?: Error) => {
      stream.off('readable', ready).off('error', settle);
      // The caller pipes the stream on later: an error emitted before that must not go unhandled.
      stream.on('error', () => undefined);
      if (err) reject(err);
      else resolve();
    };
    const ready = () => settle();
    stream.on('readable', ready).on('error', settle);
  });
}
