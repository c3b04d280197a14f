import type { NestFastifyApplication } from '@nestjs/platform-fastify';

/**
 * Makes Fastify hand non-JSON request bodies (blob uploads, manifest pushes) to the mirror as raw
 * streams instead of buffering or rejecting them, so pass-through pushes stream with backpressure.
 * JSON bodies on `/v2/` stay the exact bytes the client sent (a buffer): a parsed and re-encoded
 * body would change a pushed manifest's digest, or its length against the forwarded
 * content-length (a JSON string body made the origin call fail with a 503). Other routes (the
 * admin API) still get parsed JSON.
 */
export function registerRawBodyParser(app: NestFastifyApplication): void {
  const fastify = app.getHttpAdapter().getInstance();
  const parseJson = fastify.getDefaultJsonParser('error', 'error');
  // Through Nest, so its own default JSON parser (registered at init) steps aside.
  app.useBodyParser('application/json', { bodyLimit: fastify.initialConfig.bodyLimit }, (request, body, done) => {
    if (isRegistryPath(request.url)) done(null, body);
    // Answers through `done`; the parser type also allows a promise, which fastify's own does not return.
    else void parseJson(request as Parameters<typeof parseJson>[0], body.toString('utf8'), done);
  });
  fastify.removeContentTypeParser(['text/plain']);
  fastify.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
}

function isRegistryPath(url: string): boolean {
  return url === '/v2' || url.startsWith('/v2/') || url.startsWith('/v2?');
}
