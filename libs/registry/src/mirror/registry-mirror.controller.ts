import { All, Controller, Req, Res, UseFilters } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Readable } from 'node:stream';
import { classifyPath } from '../oci/oci-names.js';
import { BlobDelivery } from './blob-delivery.js';
import { ClientGoneError } from './client-gone.error.js';
import { OciErrorFilter } from './oci-error.filter.js';
import { RegistryMirror, type MirrorRequest, type MirrorResponse } from './registry-mirror.service.js';

/** Every `/v2/` request of the agent: routed by path shape, since repository names nest. */
@Controller()
@UseFilters(OciErrorFilter)
export class RegistryMirrorController {
  constructor(
    private readonly mirror: RegistryMirror,
    private readonly delivery: BlobDelivery,
  ) {}

  @All(['v2', 'v2/*'])
  async handle(@Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    const req = toMirrorRequest(request, reply);
    const route = classifyPath(req.path);
    let res: MirrorResponse;
    const readOnly = req.method === 'GET' || req.method === 'HEAD';
    if (route.kind === 'base' && readOnly) res = await this.mirror.base(req);
    else if (route.kind === 'manifest' && readOnly) res = await this.mirror.manifest(req, route.name, route.reference);
    else if (route.kind === 'blob' && readOnly) res = await this.mirror.blob(req, route.name, route.digest);
    else res = await this.mirror.passthrough(req);
    if (res.blob && route.kind === 'blob') {
      const done = () => res.done?.();
      this.delivery.deliver(
        reply,
        { status: res.status, headers: res.headers, blob: res.blob },
        { repository: route.name, digest: route.digest },
        done,
      );
      return;
    }
    send(reply, res);
  }
}

function toMirrorRequest(request: FastifyRequest, reply: FastifyReply): MirrorRequest {
  const url = request.url;
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
  const ns = params.get('ns') ?? undefined;
  params.delete('ns');
  const rest = params.toString();
  const ac = new AbortController();
  // The client went away: stop origin work done only for it (shared fills keep running).
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) ac.abort(new ClientGoneError());
  });
  return {
    method: request.method,
    path,
    query: rest ? `?${rest}` : '',
    ns,
    headers: request.headers,
    body: requestBody(request),
    signal: ac.signal,
  };
}

/** Raw bodies arrive as streams (see registerRawBodyParser); a body a default parser already consumed is re-encoded. */
function requestBody(request: FastifyRequest): Readable | Buffer | undefined {
  const body = request.body;
  if (body === undefined || body === null) return undefined;
  if (body instanceof Readable) return body;
  if (Buffer.isBuffer(body)) return body;
  return Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
}

function send(reply: FastifyReply, res: MirrorResponse): void {
  let finished = false;
  const done = () => {
    if (!finished) {
      finished = true;
      res.done?.();
    }
  };
  reply.raw.once('close', done);
  reply.status(res.status).headers(res.headers);
  if (res.body instanceof Readable) {
    const body = res.body;
    body.once('error', () => reply.raw.destroy());
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) body.destroy();
    });
  }
  void reply.send(res.body);
}
