import { DigestMismatchError, OciError } from '#registry';

/** Local storage errors: the proxy itself cannot hold the blob (not the origin's fault). */
const LOCAL_ERRNO = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EROFS', 'EMFILE', 'ENFILE', 'EACCES', 'EPERM']);

/**
 * The proxy's fill of one blob failed mid-way: the origin dropped the transfer (502) or the proxy
 * could not store it (503). A per-blob answer: agents fetch that blob from the origin themselves
 * and keep using the proxy for other blobs.
 */
class BlobFillFailedError extends OciError {
  constructor(status: 502 | 503, message: string, digest: string, reason: string) {
    super(status, 'UNAVAILABLE', message, { digest, reason });
    this.name = 'BlobFillFailedError';
  }
}

/**
 * A failure met while serving `digest` as a typed OCI error, never a 500 with a stack: origin
 * answers the origin path already typed (404, 401, 403, 429, 502, 503) pass through as they are;
 * a dropped or stalled transfer becomes 502, a local disk failure 503, a wrong digest 502.
 */
export function blobFailure(err: unknown, digest: string): OciError {
  if (err instanceof OciError) return err;
  if (err instanceof DigestMismatchError)
    return new OciError(502, 'UNKNOWN', 'origin sent content that does not match its digest', { digest });
  const e = err as (Error & { code?: string }) | undefined;
  const reason = e?.message ?? String(err);
  if (e?.code && LOCAL_ERRNO.has(e.code)) return new BlobFillFailedError(503, 'proxy cannot store the blob', digest, e.code);
  return new BlobFillFailedError(502, 'origin transfer of the blob failed', digest, reason);
}
