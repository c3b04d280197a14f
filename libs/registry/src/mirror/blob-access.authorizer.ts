import { LRUCache } from 'lru-cache';
import { BadOriginResponseError, OciError } from '../oci/oci.errors.js';
import type { BlobRequest } from '../sources/blob-source.js';
import type { OriginClient } from '../origin/origin.client.js';

interface Decision {
  size: number | undefined;
}

const MAX_DECISIONS = 100_000;

/**
 * Confirms at the origin (a `HEAD` of the blob in that repo, with the request's credentials) that
 * a client may read a blob before any byte of it is served — cache hits included. Positive
 * decisions are reused for `ttlMs` per (credentials hash, repository, digest): keying on the digest
 * too means knowing a digest never unlocks it through a repo that does not contain it. Denials are
 * not cached, so fixed credentials work at once.
 */
export class BlobAccessAuthorizer {
  /**
   * Decisions by key; `fetch()` runs one origin check per key at a time, shared by concurrent
   * requests (so no single client's disconnect may abort it: ignoreFetchAbort), keeps what it
   * resolved for the TTL and nothing of a rejection (denials are not cached).
   */
  private readonly decisions: LRUCache<string, Decision, BlobRequest>;

  constructor(
    private readonly client: OriginClient,
    ttlMs: number,
  ) {
    this.decisions = new LRUCache({
      max: MAX_DECISIONS,
      // lru-cache reads 0 as "no expiry"; authCacheTtl 0 means "do not reuse decisions".
      ttl: Math.max(1, ttlMs),
      ignoreFetchAbort: true,
      fetchMethod: async (_key, _stale, { context }) => ({ size: await this.check(context) }),
    });
  }

  /** Resolves with the blob's size at the origin when readable; throws UnauthorizedError, 403/404 OciError or an origin error. */
  async authorize(request: BlobRequest): Promise<number | undefined> {
    const key = `${request.origin.base}|${request.credentials.key}|${request.repository}|${request.digest}`;
    const decision = await this.decisions.fetch(key, { context: request });
    return decision?.size;
  }

  private async check(request: BlobRequest): Promise<number | undefined> {
    const res = await this.client.request({
      origin: request.origin,
      method: 'HEAD',
      path: `/v2/${request.repository}/blobs/${request.digest}`,
      credentials: request.credentials,
      scope: `repository:${request.repository}:pull`,
      followRedirects: true,
    });
    res.body.resume();
    if (res.status === 200) {
      const size = Number(res.headers['content-length']);
      return Number.isSafeInteger(size) && size >= 0 ? size : undefined;
    }
    if (res.status === 404) throw new OciError(404, 'BLOB_UNKNOWN', 'blob unknown to registry', { digest: request.digest });
    if (res.status === 403) throw new OciError(403, 'DENIED', 'requested access to the resource is denied');
    if (res.status === 429) throw new OciError(429, 'TOOMANYREQUESTS', 'origin rate limit reached');
    throw new BadOriginResponseError(`origin answered ${res.status} to a blob HEAD`);
  }
}
