import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Logger } from '@nestjs/common';
import { request as httpRequest } from 'undici';
import { SWARM_TOKEN_HEADER } from '#ops';
import { digestHex, type BlobFetcher, type BlobRequest, type FetchedBlob } from '#registry';
import { describeMetainfo, type BlobSeeder, type DownloadHandle, type ProxyRing, type SwarmClient } from '#swarm';

export interface SwarmBlobFetcherOptions {
  ring: ProxyRing;
  swarm: SwarmClient;
  seeder: BlobSeeder;
  /** Where downloads are written (inside the cache's temp area, so a restart clears leftovers). */
  downloadDir: string;
  swarmToken: string | undefined;
  /** Blobs smaller than this go straight to the origin (`p2pMinSize`). */
  minSize: number;
  /** Timeout for one torrent request to a proxy (it may have to fetch the blob from the origin first), ms. */
  torrentTimeoutMs: number;
  /** Proxies tried per blob before giving up on the swarm. */
  maxProxies?: number;
}

const PEER_PORT_HEADER = 'x-p2p-peer-port';
const MAX_METAINFO_BYTES = 4 * 1024 * 1024;

/**
 * The swarm between cache and origin: asks the blob's owning proxy (rendezvous hash) for its
 * torrent, adds that proxy as a direct peer (works with every tracker down), and streams verified
 * pieces from `offset` as they arrive. Returns undefined — the origin serves — for small blobs, no
 * reachable proxy, or a proxy refusal; a stall mid-blob is the fill's to notice (stallTimeout) and
 * it resumes from the origin by Range. Once the blob is verified and cached, it is seeded from there.
 */
export class SwarmBlobFetcher implements BlobFetcher {
  readonly name = 'swarm';
  private readonly logger = new Logger(SwarmBlobFetcher.name);
  private readonly downloads = new Map<string, { handle: DownloadHandle; metainfo: Buffer }>();

  constructor(private readonly options: SwarmBlobFetcherOptions) {}

  async fetch(request: BlobRequest, offset: number, signal: AbortSignal): Promise<FetchedBlob | undefined> {
    if (request.size === undefined || request.size < this.options.minSize) return undefined;
    const torrent = await this.torrentFromOwner(request, signal);
    if (!torrent) return undefined;
    const summary = await describeMetainfo(torrent.metainfo);
    if (summary.length !== request.size || summary.name !== digestHex(request.digest)) {
      this.logger.warn(`proxy ${torrent.proxy} sent a torrent that does not describe ${request.digest}; using the origin`);
      return undefined;
    }
    await mkdir(this.options.downloadDir, { recursive: true });
    const handle = await this.options.swarm.download(torrent.metainfo, { dir: this.options.downloadDir, peers: [torrent.peer] });
    this.downloads.set(request.digest, { handle, metainfo: torrent.metainfo });
    const stream = handle.createReadStream(offset);
    signal.addEventListener('abort', () => {
      stream.destroy();
      void this.discard(request.digest);
    }, { once: true });
    return { size: summary.length, stream, received: () => handle.progress().received };
  }

  /** Verified and cached: drop the download copy and seed the cached file instead. Failed: clean up. */
  settled(digest: string, ok: boolean): void {
    const download = this.downloads.get(digest);
    if (!download) return;
    void this.discard(digest).then(async () => {
      if (!ok) return;
      try {
        await this.options.seeder.seedWith(digest, download.metainfo);
      } catch (err) {
        this.logger.warn(`cannot seed ${digest}: ${(err as Error).message}`);
      }
    });
  }

  /** The fill gave up on the swarm or failed: stop the download and delete its partial file. */
  async discard(digest: string): Promise<void> {
    const download = this.downloads.get(digest);
    if (!download) return;
    this.downloads.delete(digest);
    await download.handle.destroy().catch(() => undefined);
    await rm(download.handle.path, { force: true });
  }

  private async torrentFromOwner(
    request: BlobRequest,
    signal: AbortSignal,
  ): Promise<{ metainfo: Buffer; peer: string; proxy: string } | undefined> {
    let owners: string[];
    try {
      owners = this.options.ring.ownersFor(request.digest);
    } catch {
      return undefined;
    }
    for (const proxy of owners.slice(0, this.options.maxProxies ?? 3)) {
      if (signal.aborted) return undefined;
      try {
        const torrent = await this.askProxy(proxy, request, signal);
        if (torrent) return { ...torrent, proxy };
        return undefined;
      } catch (err) {
        this.logger.warn(`proxy ${proxy} failed for ${request.digest}: ${(err as Error).message}; trying the next`);
        this.options.ring.markDown(proxy);
      }
    }
    return undefined;
  }

  /** The torrent from one proxy; undefined when it refuses (4xx: the origin decides), throws when it is broken. */
  private async askProxy(proxy: string, request: BlobRequest, signal: AbortSignal): Promise<{ metainfo: Buffer; peer: string } | undefined> {
    const url = new URL(`${proxy}/v1/blobs/${request.digest}/torrent`);
    url.searchParams.set('repo', request.repository);
    url.searchParams.set('ns', request.upstream.host);
    const headers: Record<string, string> = {};
    if (this.options.swarmToken) headers[SWARM_TOKEN_HEADER] = this.options.swarmToken;
    if (request.credentials.header) headers.authorization = request.credentials.header;
    const res = await httpRequest(url, {
      headers,
      signal: AbortSignal.any([signal, AbortSignal.timeout(this.options.torrentTimeoutMs)]),
      headersTimeout: this.options.torrentTimeoutMs,
      bodyTimeout: this.options.torrentTimeoutMs,
    });
    if (res.statusCode >= 500) {
      await res.body.dump();
      throw new Error(`answered ${res.statusCode}`);
    }
    if (res.statusCode !== 200) {
      await res.body.dump();
      this.logger.warn(`proxy ${proxy} refused the torrent of ${request.digest} (${res.statusCode}); using the origin`);
      return undefined;
    }
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of res.body) {
      total += (chunk as Buffer).length;
      if (total > MAX_METAINFO_BYTES) throw new Error('torrent too large');
      chunks.push(chunk as Buffer);
    }
    const port = Number(res.headers[PEER_PORT_HEADER]);
    if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`no valid ${PEER_PORT_HEADER} header`);
    return { metainfo: Buffer.concat(chunks), peer: `${new URL(proxy).hostname}:${port}` };
  }
}
