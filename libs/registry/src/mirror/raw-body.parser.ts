import type { NestFastifyApplication } from '@nestjs/platform-fastify';

/**
 * Makes Fastify hand non-JSON request bodies (blob uploads, manifest pushes) to the mirror as raw
 * streams instead of buffering or rejecting them, so pass-through pushes stream with backpressure.
 */
export function registerRawBodyParser(app: NestFastifyApplication): void {
  const fastify = app.getHttpAdapter().getInstance();
  fastify.removeContentTypeParser(['text/plain']);
  fastify.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
}
