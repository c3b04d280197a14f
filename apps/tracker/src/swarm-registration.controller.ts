import { BadRequestException, Controller, Headers, HttpCode, Param, Post, Query, UnauthorizedException } from '@nestjs/common';
import { bearerToken } from '#ops';
import { TrackerServer } from '#swarm';

/** Proxies register the swarms they seed, for trackers run with `requireRegisteredSwarms`. */
@Controller('v1/swarms')
export class SwarmRegistrationController {
  constructor(private readonly tracker: TrackerServer) {}

  @Post(':infoHash')
  @HttpCode(200)
  register(
    @Param('infoHash') infoHash: string,
    @Headers('authorization') authorization: string | undefined,
    @Query('token') queryToken: string | undefined,
  ): { infoHash: string; registered: true } {
    if (!this.tracker.tokenOk(bearerToken(authorization) ?? queryToken)) {
      throw new UnauthorizedException('missing or wrong swarm token: send Authorization: Bearer <swarm token>');
    }
    if (!this.tracker.register(infoHash)) throw new BadRequestException('infoHash must be 40 hex characters');
    return { infoHash: infoHash.toLowerCase(), registered: true };
  }
}
