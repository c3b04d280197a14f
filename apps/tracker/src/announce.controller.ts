import { Controller, Get, Req, Res } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { TrackerServer } from '#swarm';

/** BitTorrent HTTP tracker protocol on the app's port: bittorrent-tracker writes the bencoded answer. */
@Controller()
export class AnnounceController {
  constructor(private readonly tracker: TrackerServer) {}

  @Get('announce')
  announce(@Req() req: FastifyRequest, @Res() reply: FastifyReply): void {
    reply.hijack();
    this.tracker.handle('announce', req.raw, reply.raw);
  }

  @Get('scrape')
  scrape(@Req() req: FastifyRequest, @Res() reply: FastifyReply): void {
    reply.hijack();
    this.tracker.handle('scrape', req.raw, reply.raw);
  }
}
