import { Controller, Get, UseGuards } from '@nestjs/common';
import { AdminTokenGuard } from '#ops';
import { SwarmClient, type TorrentSummary } from '../client/swarm-client.js';

/** `GET /admin/torrents`: what this process downloads and seeds, with progress, rates and peers. */
@Controller('admin')
@UseGuards(AdminTokenGuard)
export class AdminTorrentsController {
  constructor(private readonly swarm: SwarmClient) {}

  @Get('torrents')
  list(): { torrents: TorrentSummary[] } {
    return { torrents: this.swarm.list() };
  }
}
