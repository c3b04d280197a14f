import { Catch, HttpException, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { BodyTooLargeError } from '../upstream/upstream.client.js';
import { DigestMismatchError, OciError } from '../oci/oci.errors.js';

/**
 * The one place `/v2/` errors become responses: OCI `{"errors":[…]}` bodies with the error's status
 * and headers. Errors after the response started can only cut the connection, which clients
 * see as a failed download — never as a complete wrong blob.
 */
@Catch()
export class OciErrorFilter implements ExceptionFilter {
  private readonly logger = new Logger(OciErrorFilter.name);

  catch(exception: unknown, host: ArgumentsHost): void {
    const reply = host.switchToHttp().getResponse<FastifyReply>();
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
    this.logger.error(`unexpected error: ${(exception as Error)?.stack ?? String(exception)}`);
    return new OciError(500, 'UNKNOWN', 'internal error');
  }
}
