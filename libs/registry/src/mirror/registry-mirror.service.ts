import { createHash } from 'node:crypto';
import { Transform, type Readable, type Writable } from 'node:stream';
import { parseRange } from '../oci/byte-range.js';
import { BadOriginResponseError, OciError } from '../oci/oci.errors.js';
import { MAX_MANIFEST_BYTES, parseReference, validateDigest, validateName } from '../oci/oci-names.js';
import type { BlobSource } from '../sources/blob-source.js';
import { ClientCredentials } from '../origin/client-credentials.js';
import type { Origin, OriginSet } from '../origin/origin-set.js';
import {
  BodyTooLargeError,
  forwardableHeaders,
  originBodyError,
  readLimitedBuffer,
  type HeaderMap,
  type OriginClient,
} from '../origin/origin.client.js';
import type { BlobAccessAuthorizer } from './blob-access.authorizer.js';

/** What the controller writes back. `done` runs once the response is over (releases pins). */
export interface MirrorResponse {
  status: number;
  headers: Record<string, string | string[]>;
  body?: Readable | Buffer;
  /** Blob bytes, written straight into the response socket with reused buffers; `source` names where they came from (logs, metrics). */
  blob?: { readonly source: string; copyTo(dest: Writable): Promise<void> };
  done?: () => void;
}

/** One incoming `/v2/` request, reduced to what the mirror needs. */
export interface MirrorRequest {
  method: string;
  /** Path without query. */
  path: string;
  /** Query string without `ns` (passed on verbatim), starting with `?` or empty. */
  query: string;
  ns: string | undefined;
  headers: HeaderMap;
  body?: Readable | Buffer;
  signal?: AbortSignal;
}

const API_VERSION = { 'docker-distribution-api-version': 'registry/2.0' };

/**
 * The agent's registry face: manifests and every other `/v2/` call pass through to the origin with
 * the client's credentials; blobs are authorised at the origin, then read from the blob source chain.
 */
export class RegistryMirror {
  constructor(
    private readonly origins: OriginSet,
    private readonly client: OriginClient,
    private readonly authorizer: BlobAccessAuthorizer,
    private readonly blobs: BlobSource,
  ) {}

  /** `GET /v2/`: 200 when the origin accepts the client's credentials (or needs none), else a Basic challenge. */
  async base(req: MirrorRequest): Promise<MirrorResponse> {
    const origin = this.origins.resolve(req.ns);
    await this.client.ping(origin, ClientCredentials.fromHeader(req.headers.authorization), req.signal);
    return { status: 200, headers: { ...API_VERSION, 'content-type': 'application/json' }, body: Buffer.from('{}') };
  }

  /** `GET`/`HEAD` manifests by tag or digest; tags are always resolved at the origin. */
  async manifest(req: MirrorRequest, name: string, reference: string): Promise<MirrorResponse> {
    validateName(name);
    const ref = parseReference(reference);
    const origin = this.origins.resolve(req.ns);
    const res = await this.client.request({
      origin,
      method: req.method === 'HEAD' ? 'HEAD' : 'GET',
      path: `/v2/${name}/manifests/${reference}${req.query}`,
      credentials: ClientCredentials.fromHeader(req.headers.authorization),
      scope: `repository:${name}:pull`,
      headers: pick(req.headers, ['accept', 'if-none-match', 'user-agent']),
      signal: req.signal,
    });
    const headers = pick(forwardableHeaders(res.headers), ['content-type', 'docker-content-digest', 'etag', 'content-length']);
    const declared = Number(res.headers['content-length']);
    if (res.status === 200 && declared > MAX_MANIFEST_BYTES) {
      res.body.destroy();
      throw manifestTooLarge();
    }
    if (req.method === 'HEAD') {
      res.body.resume();
      return { status: res.status, headers: { ...API_VERSION, ...headers } };
    }
    let body: Buffer;
    try {
      body = await readLimitedBuffer(res.body, MAX_MANIFEST_BYTES);
    } catch (err) {
      if (err instanceof BodyTooLargeError) throw manifestTooLarge();
      throw originBodyError(err);
    }
    if (res.status === 200) {
      const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
      if (ref.kind === 'digest' && digest !== ref.digest) throw new BadOriginResponseError(`manifest content does not match ${ref.digest}`);
      headers['docker-content-digest'] = digest;
    }
    headers['content-length'] = String(body.length);
    return { status: res.status, headers: { ...API_VERSION, ...headers }, body };
  }

  /** `GET`/`HEAD` a blob: authorised at the origin first (cache hits too), then served from the chain with Range. */
  async blob(req: MirrorRequest, name: string, digest: string): Promise<MirrorResponse> {
    validateName(name);
    validateDigest(digest);
    const origin = this.origins.resolve(req.ns);
    const blobRequest = { origin, repository: name, digest, credentials: ClientCredentials.fromHeader(req.headers.authorization) };
    const originSize = await this.authorizer.authorize(blobRequest);
    const common = {
      ...API_VERSION,
      'docker-content-digest': digest,
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
    };
    if (req.method === 'HEAD' && originSize !== undefined) {
      return { status: 200, headers: { ...common, 'content-length': String(originSize) } };
    }
    const opened = await this.blobs.open({ ...blobRequest, size: originSize });
    if (!opened) throw new OciError(404, 'BLOB_UNKNOWN', 'blob unknown to registry', { digest });
    if (req.method === 'HEAD') {
      opened.release();
      return { status: 200, headers: { ...common, 'content-length': String(opened.size) } };
    }
    let range;
    try {
      range = parseRange(single(req.headers.range), opened.size);
    } catch (err) {
      opened.release();
      throw err;
    }
    const length = range ? range.end - range.start + 1 : opened.size;
    const headers: Record<string, string> = { ...common, 'content-length': String(length) };
    if (range) headers['content-range'] = `bytes ${range.start}-${range.end}/${opened.size}`;
    return {
      status: range ? 206 : 200,
      headers,
      blob: {
        get source() {
          return opened.source;
        },
        copyTo: (dest) => opened.copyTo(dest, range),
      },
      done: () => opened.release(),
    };
  }

  /** Any other `/v2/` call (tags/list, referrers, push…): forwarded verbatim, streaming both ways. */
  async passthrough(req: MirrorRequest): Promise<MirrorResponse> {
    const origin = this.origins.resolve(req.ns);
    const repo = /^\/v2\/(.+?)\/(?:tags|manifests|blobs|referrers)\//.exec(req.path)?.[1];
    const write = !['GET', 'HEAD'].includes(req.method);
    const scope = repo
      ? `repository:${repo}:${write ? 'pull,push' : 'pull'}`
      : req.path.startsWith('/v2/_catalog')
        ? 'registry:catalog:*'
        : undefined;
    let body = req.body;
    if (write && /\/manifests\/[^/]+$/.test(req.path)) body = limitManifestBody(req.headers, body);
    const res = await this.client.request({
      origin,
      method: req.method,
      path: `${req.path}${req.query}`,
      credentials: ClientCredentials.fromHeader(req.headers.authorization),
      scope,
      headers: req.headers,
      body,
      signal: req.signal,
    });
    const headers = forwardableHeaders(res.headers);
    if (typeof headers.location === 'string') headers.location = relativeLocation(headers.location, origin, req.ns);
    return { status: res.status, headers, body: req.method === 'HEAD' ? (res.body.resume(), undefined) : res.body };
  }
}

function manifestTooLarge(): OciError {
  return new OciError(400, 'MANIFEST_INVALID', `manifest larger than ${MAX_MANIFEST_BYTES} bytes`);
}

function limitManifestBody(headers: HeaderMap, body: Readable | Buffer | undefined): Readable | Buffer | undefined {
  if (Number(single(headers['content-length']) ?? 0) > MAX_MANIFEST_BYTES) throw manifestTooLarge();
  if (!body || Buffer.isBuffer(body)) {
    if (body && body.length > MAX_MANIFEST_BYTES) throw manifestTooLarge();
    return body;
  }
  let total = 0;
  return body.pipe(
    new Transform({
      transform(chunk: Buffer, _enc, done) {
        total += chunk.length;
        done(total > MAX_MANIFEST_BYTES ? manifestTooLarge() : null, chunk);
      },
    }),
  );
}

/** Upload Locations pointing at the origin are made relative so the client keeps talking to the mirror. */
function relativeLocation(location: string, origin: Origin, ns: string | undefined): string {
  if (!location.startsWith(`${origin.base}/`)) return location;
  const rel = location.slice(origin.base.length);
  if (!ns) return rel;
  return `${rel}${rel.includes('?') ? '&' : '?'}ns=${encodeURIComponent(ns)}`;
}

function pick(headers: HeaderMap, names: string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const n of names) {
    const v = headers[n];
    if (v !== undefined) out[n] = v;
  }
  return out;
}

function single(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
