import { pipeline, Transform, type Readable } from 'node:stream';
import { OciError, BadOriginResponseError } from '../oci/oci.errors.js';
import type { OriginClient } from '../origin/origin.client.js';
import type { BlobFetcher, BlobRequest, FetchedBlob } from './blob-source.js';

export interface OriginFetcherOptions {
  /** A pass-through the origin's bytes flow through, e.g. charging them to the node's download rate limit. */
  throttle?: () => Transform;
}

/** The fetcher of last resort: the blob straight from the origin registry, resumed by Range from any offset. */
export class OriginFetcher implements BlobFetcher {
  readonly name = 'origin';

  constructor(
    private readonly client: OriginClient,
    private readonly options: OriginFetcherOptions = {},
  ) {}

  async fetch(request: BlobRequest, offset: number, signal: AbortSignal): Promise<FetchedBlob | undefined> {
    const res = await this.client.request({
      origin: request.origin,
      method: 'GET',
      path: `/v2/${request.repository}/blobs/${request.digest}`,
      credentials: request.credentials,
      scope: `repository:${request.repository}:pull`,
      headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
      signal,
      followRedirects: true,
    });
    if (res.status === 404) {
      res.body.resume();
      throw new OciError(404, 'BLOB_UNKNOWN', 'blob unknown to registry', { digest: request.digest });
    }
    // Same answers as the authorisation HEAD gives for these (a proxy passes them on to agents as they are).
    if (res.status === 403 || res.status === 429) {
      res.body.resume();
      throw res.status === 403
        ? new OciError(403, 'DENIED', 'requested access to the resource is denied')
        : new OciError(429, 'TOOMANYREQUESTS', 'origin rate limit reached');
    }
    if (res.status !== 200 && res.status !== 206) {
      res.body.resume();
      throw new BadOriginResponseError(`origin answered ${res.status} for a blob`);
    }
    let size: number;
    let body: Readable = res.body;
    if (res.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(res.headers['content-range'] ?? ''));
      if (!m || Number(m[1]) !== offset) {
        res.body.destroy();
        throw new BadOriginResponseError('origin answered a Range request with an unexpected Content-Range');
      }
      size = Number(m[3]);
    } else {
      size = Number(res.headers['content-length']);
      if (!Number.isSafeInteger(size) || size < 0) {
        res.body.destroy();
        throw new BadOriginResponseError('origin blob response without a valid Content-Length');
      }
      if (offset > 0) body = chain(body, skipBytes(offset));
    }
    return { size, stream: this.options.throttle ? chain(body, this.options.throttle()) : body };
  }
}

/** Drops the first `n` bytes (origins that ignore Range answer 200 with the whole blob). */
function skipBytes(n: number): Transform {
  let left = n;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      if (left >= chunk.length) {
        left -= chunk.length;
        done();
        return;
      }
      const rest = chunk.subarray(left);
      left = 0;
      done(null, rest);
    },
  });
}

/** Pipes with error propagation both ways (a plain pipe() would leave the tail hanging on errors). */
function chain(source: Readable, through: Transform): Readable {
  return pipeline(source, through, () => undefined);
}
