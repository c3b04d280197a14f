import {
  BadRequestException,
  Body,
  Controller,
  Get,
  HttpCode,
  Patch,
  UseGuards,
  ValidationPipe,
  type ArgumentMetadata,
  type PipeTransform,
  type Type,
} from '@nestjs/common';
import { parseRate } from '../config/units.js';
import { ThrottleService, type RateSource } from '../throttle/throttle.service.js';
import { AdminTokenGuard } from './admin-token.guard.js';
import { ratePatchDto } from './rate-patch.dto.js';

/**
 * `GET|PATCH /admin/rate` for the limits this app declares. Built per app because the accepted
 * body keys are that app's limit names: `{"originRate":1}` sent to an agent is a 400, not a no-op.
 */
export function rateControllerFor(names: readonly string[]): Type<unknown> {
  const Dto = ratePatchDto(names);
  const validation = new ValidationPipe({
    expectedType: Dto,
    whitelist: true,
    forbidNonWhitelisted: true,
    forbidUnknownValues: true,
    transform: false,
    exceptionFactory: (errors) =>
      new BadRequestException(
        errors.flatMap((e) => Object.values(e.constraints ?? {}).map((m) => (m.startsWith(`${e.property} `) ? m : `${e.property}: ${m}`))),
      ),
  });
  // Only a parsed JSON object may reach class-transformer: an app with a catch-all body parser (the
  // agent streams non-JSON bodies for registry pushes) hands over the live request stream, and
  // transforming its socket aborts the whole process (a native assertion in TCPWrap).
  const pipe: PipeTransform = {
    transform(value: unknown, metadata: ArgumentMetadata) {
      if (!isPlainObject(value))
        throw new BadRequestException('body must be a JSON object of limit names to rates (content-type: application/json)');
      return validation.transform(value, metadata);
    },
  };

  @Controller('admin')
  @UseGuards(AdminTokenGuard)
  class RateController {
    constructor(private readonly throttle: ThrottleService) {}

    @Get('rate')
    current(): RateView {
      return rateView(this.throttle);
    }

    @Patch('rate')
    @HttpCode(200)
    update(@Body(pipe) body: Record<string, unknown>): RateView {
      // Validation skips absent-looking values (null): checked here again, so a limit never becomes
      // undefined (that broke the bucket until restart: a 1 MB/s limit set afterwards let 5 MB/s through).
      const updates = Object.entries(body).map(([name, value]) => {
        const rate = parseRate(value);
        if (rate === undefined)
          throw new BadRequestException([
            `${name} must be a non-negative rate (bytes/s or "20MB", "5MiB/s"); got ${JSON.stringify(value)}`,
          ]);
        return [name, rate] as const;
      });
      for (const [name, rate] of updates) this.throttle.set(name, rate, 'patch');
      return rateView(this.throttle);
    }
  }
  return RateController;
}

/**
 * Each limit as a top-level number (as before: scripts read `.downloadRate`), plus who set it and
 * when: `source.<limit>` is "patch", "file" (config file, at boot or by a live edit), "env"
 * (a `P2P_*` variable, which file edits never override) or "default".
 */
type RateView = Record<string, number> & {
  source: Record<string, RateSource>;
  updatedAt: Record<string, string>;
};

function rateView(throttle: ThrottleService): RateView {
  const sources = Object.entries(throttle.sources());
  return {
    ...throttle.snapshot(),
    source: Object.fromEntries(sources.map(([name, p]) => [name, p.source])),
    updatedAt: Object.fromEntries(sources.map(([name, p]) => [name, p.updatedAt.toISOString()])),
  } as RateView;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
