import { pipeline } from 'node:stream/promises';
import { Controller, Get, Headers, Logger, Param, Query, Res, UseFilters, UseGuards } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { durationMs, SwarmTokenGuard, ThrottleService, throttledStream } from '#ops';
import { ConfigService } from '@nestjs/config';
import { ClientIdleWatchdog, OciErrorFilter, type CacheNodeConfig } from '#registry';
import { SwarmClient } from '../client/swarm-client.js';
import { BlobTorrentService } from './blob-torrent.service.js';
import {
  INFO_HASH_HEADER,
  NS_QUERY,
  PEER_PORT_HEADER,
  PROXY_API_PREFIX,
  RELAY_ROUTE,
  REPO_QUERY,
  TORRENT_CONTENT_TYPE,
  TORRENT_ROUTE,
} from './proxy-api.js';

/**
 * `GET /v1/blobs/<digest>/torrent?repo=<name>[&ns=<host>]`: cluster members only (swarm token);
 * the client's registry credentials come along in Authorization for the origin check.
 * `GET /v1/blobs/<digest>?repo=…[&ns=…]` (Range `bytes=N-` allowed): the blob's bytes, for agents
 * that would otherwise wait for the torrent while the proxy is still fetching the blob.
 * Paths, query names and headers come from the proxy API module (libs/swarm/src/proxy/proxy-api.ts),
 * which the agents' client uses too.
 */
@Controller(PROXY_API_PREFIX)
@UseGuards(SwarmTokenGuard)
@UseFilters(OciErrorFilter)
export class ProxyApiController {
  /** An agent that stops reading a relay (hung, SIGSTOPped) is cut so its buffers are freed. */
  private readonly idle: ClientIdleWatchdog;
  private readonly logger = new Logger(ProxyApiController.name);

  constructor(
    private readonly torrents: BlobTorrentService,
    private readonly swarm: SwarmClient,
    private readonly throttle: ThrottleService,
    config: ConfigService<CacheNodeConfig, true>,
  ) {
    this.idle = new ClientIdleWatchdog(config.get('clientIdleTimeout', { infer: true }) * 1000);
  }

  @Get(TORRENT_ROUTE)
  async torrent(
    @Param('digest') digest: string,
    @Query(REPO_QUERY) repo: string | undefined,
    @Query(NS_QUERY) ns: string | undefined,
    @Headers('authorization') authorization: string | undefined,
    @Res() reply: FastifyReply,
  ): Promise<void> {
    const torrent = await this.torrents.torrent({ digest, repository: repo ?? '', ns, authorization });
    await reply
      .status(200)
      .headers({
        'content-type': TORRENT_CONTENT_TYPE,
        [INFO_HASH_HEADER]: torrent.infoHash,
        [PEER_PORT_HEADER]: String(await this.swarm.ready()),
      })
      .send(torrent.metainfo);
  }

  @Get(RELAY_ROUTE)
  async relay(
    @Param('digest') digest: string,
    @Query(REPO_QUERY) repo: string | undefined,
    @Query(NS_QUERY) ns: string | undefined,
    @Headers('authorization') authorization: string | undefined,
    @Headers('range') range: string | undefined,
    @Res() reply: FastifyReply,
  ): Promise<void> {
    const blob = await this.torrents.relay({ digest, repository: repo ?? '', ns, authorization }, range);
    const length = blob.range ? blob.range.end - blob.range.start + 1 : blob.size;
    const headers: Record<string, string> = {
      'content-type': 'application/octet-stream',
      'content-length': String(length),
      'docker-content-digest': digest,
    };
    if (blob.range) headers['content-range'] = `bytes ${blob.range.start}-${blob.range.end}/${blob.size}`;
    void reply.hijack();
    reply.raw.writeHead(blob.range ? 206 : 200, headers);
    const unwatch = this.idle.watch(reply.raw.socket, () => reply.raw.destroy());
    // Relay bytes share the proxy's uploadRate budget rule (their own bucket of that rate).
    pipeline(blob.stream, throttledStream(this.throttle, 'uploadRate'), reply.raw).then(
      () => {
        unwatch();
        blob.opened.release();
        this.logger.log({
          msg: 'relay done',
          digest,
          repo,
          offset: blob.range?.start ?? 0,
          bytes: length,
          source: blob.opened.source,
          durationMs: durationMs(reply.elapsedTime),
        });
      },
      // The fill failed after the first bytes went out (wrong digest, origin gone) or the agent
      // left: cut the connection so the agent sees a failed transfer, never a short one.
      (err: unknown) => {
        unwatch();
        blob.opened.release();
        reply.raw.destroy();
        this.logger.log({
          msg: 'relay cut',
          digest,
          repo,
          offset: blob.range?.start ?? 0,
          length,
          source: blob.opened.source,
          durationMs: durationMs(reply.elapsedTime),
          reason: (err as Error).message,
        });
      },
    );
  }
}
