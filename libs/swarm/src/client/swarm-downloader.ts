import type { DownloadHandle, DownloadOptions } from './swarm-client.js';

/** What the swarm fetcher needs of the swarm client (SwarmClient; an in-memory fake in specs). */
export interface SwarmDownloader {
  /** Starts, or joins, the download of a blob torrent into `opts.dir`; resolves once its file is open. */
  download(metainfo: Uint8Array, opts: DownloadOptions): Promise<DownloadHandle>;
}
