import { describe, expect, it } from 'vitest';
import { BadOriginResponseError, DigestMismatchError, OciError, OriginUnavailableError, UnauthorizedError } from '#registry';
import { blobFailure } from './proxy.errors.js';

const D = `sha256:${'a'.repeat(64)}`;

describe(blobFailure.name, () => {
  it('passes origin answers through with their own status (404, 401, 403, 429, 502, 503)', () => {
    for (const err of [
      new OciError(404, 'BLOB_UNKNOWN', 'blob unknown to registry'),
      new UnauthorizedError('origin'),
      new OciError(403, 'DENIED', 'denied'),
      new OciError(429, 'TOOMANYREQUESTS', 'slow down'),
      new BadOriginResponseError('origin answered 500 for a blob'),
      new OriginUnavailableError('ECONNREFUSED'),
    ]) {
      expect(blobFailure(err, D)).toBe(err);
    }
  });

  it('turns a dropped origin transfer into a typed 502, never a 500 (issue #12 item 6)', () => {
    const socket = Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' });
    for (const err of [socket, new Error('origin ended at byte 3000000 of 16000000'), new Error('no data for 60000 ms')]) {
      const typed = blobFailure(err, D);
      expect(typed.status).toBe(502);
      expect(typed.body().errors[0]).toMatchObject({ code: 'UNAVAILABLE', detail: { digest: D, reason: err.message } });
    }
    expect(blobFailure(new DigestMismatchError(D, `sha256:${'b'.repeat(64)}`), D).status).toBe(502);
  });

  it("answers 503 when the proxy's own disk fails", () => {
    const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    expect(blobFailure(full, D)).toMatchObject({ status: 503, code: 'UNAVAILABLE' });
  });
});
