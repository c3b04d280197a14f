import { Controller, Get, Headers, Param, Query, Res, UseFilters, UseGuards } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { SwarmTokenGuard } from '#ops';
import { OciErrorFilter } from '#registry';
import { SwarmClient } from '#swarm';
import { BlobTorrentService } from './blob-torrent.service.js';

/** Header telling agents which BitTorrent port to dial this proxy on (its HTTP port differs). */
export const PEER_PORT_HEADER = 'x-p2p-peer-port';

/**
 * `GET /v1/blobs/<digest>/torrent?repo=<name>[&ns=<host>]`: cluster members only (swarm token);
 * the client's registry credentials come along in Authorization for the origin check.
 */
@Controller('v1/blobs')
@UseGuards(SwarmTokenGuard)
@UseFilters(OciErrorFilter)
export class TorrentController {
  constructor(
    private readonly torrents: BlobTorrentService,
    private readonly swarm: SwarmClient,
  ) {}

  @Get(':digest/torrent')
  async torrent(
    @Param('digest') digest: string,
    @Query('repo') repo: string | undefined,
    @Query('ns') ns: string | undefined,
    @Headers('authorization') authorization: string | undefined,
    @Res() reply: FastifyReply,
  ): Promise<void> {
    const torrent = await this.torrents.torrent({ digest, repository: repo ?? '', ns, authorization });
    await reply
      .status(200)
      .headers({
        'content-type': 'application/x-bittorrent',
        'x-p2p-info-hash': torrent.infoHash,
        [PEER_PORT_HEADER]: String(await this.swarm.ready()),
      })
      .send(torrent.metainfo);
  }
}
