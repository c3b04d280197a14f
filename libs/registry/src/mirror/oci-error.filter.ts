import { Catch, HttpException, Logger, Optional, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Counter } from 'prom-client';
import { MetricsService, redactUrl } from '#ops';
import { BodyTooLargeError } from '../origin/origin.client.js';
import { DigestMismatchError, OciError } from '../oci/oci.errors.js';
import { ClientGoneError } from './client-gone.error.js';
import { clientDisconnects } from './registry.metrics.js';

/**
 * The one place `/v2/` errors become responses: OCI `{"errors":[…]}` bodies with the error's status
 * and headers. Errors after the response started can only cut the connection, which clients
 * see as a failed download — never as a complete wrong blob. A request that failed because its
 * client went away gets no response and one debug line (counted), not an error log: clients that
 * give up (timeouts, cancelled pulls, a node draining) are routine and carry no stack worth reading.
 */
@Catch()
export class OciErrorFilter implements ExceptionFilter {
  private readonly logger = new Logger(OciErrorFilter.name);
  private readonly disconnects: Counter<'phase'> | undefined;

  constructor(@Optional() metrics?: MetricsService) {
    this.disconnects = metrics ? clientDisconnects(metrics) : undefined;
  }

  catch(exception: unknown, host: ArgumentsHost): void {
    const reply = host.switchToHttp().getResponse<FastifyReply>();
    if (exception instanceof ClientGoneError || clientGone(reply)) {
      const request = host.switchToHttp().getRequest<FastifyRequest>();
      this.disconnects?.inc({ phase: 'before_response' });
      if (Logger.isLevelEnabled('debug')) {
        this.logger.debug({
          msg: 'client disconnected before the response',
          method: request.method,
          url: redactUrl(request.url),
          reason: errorMessage(exception),
        });
      }
      reply.raw.destroy();
      return;
    }
    const error = this.toOci(exception);
    if (reply.sent || reply.raw.headersSent) {
      reply.raw.destroy();
      return;
    }
    void reply
      .status(error.status)
      .headers({ ...error.headers, 'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0' })
      .send(JSON.stringify(error.body()));
  }

  private toOci(exception: unknown): OciError {
    if (exception instanceof OciError) return exception;
    if (exception instanceof BodyTooLargeError) return new OciError(400, 'SIZE_INVALID', exception.message);
    if (exception instanceof DigestMismatchError) return new OciError(502, 'UNKNOWN', 'origin sent content that does not match its digest');
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      return new OciError(status, status === 404 ? 'NAME_UNKNOWN' : status === 401 ? 'UNAUTHORIZED' : 'UNSUPPORTED', exception.message);
    }
    this.logger.error({ msg: 'unexpected error', err: exception });
    return new OciError(500, 'UNKNOWN', 'internal error');
  }
}

/** True once the client's connection is gone (it closed it, or it was cut): no response can reach it. */
function clientGone(reply: FastifyReply): boolean {
  // The socket is null once the response has let go of it.
  const socket: { destroyed: boolean } | null = reply.raw.socket;
  return reply.raw.destroyed || socket?.destroyed === true;
}

function errorMessage(exception: unknown): string {
  return exception instanceof Error ? exception.message : String(exception);
}
