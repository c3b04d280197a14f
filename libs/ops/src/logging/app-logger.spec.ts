import { describe, expect, it } from 'vitest';
import { redactUrl } from './app-logger.js';

describe(redactUrl.name, () => {
  it('hides credential-like query parameters and keeps the rest', () => {
    expect(redactUrl('/v2/a/blobs/sha256:ab?ns=docker.io&token=s3cr3t')).toBe('/v2/a/blobs/sha256:ab?ns=docker.io&token=REDACTED');
    expect(redactUrl('/x?X-Amz-Signature=abc&a=1')).toBe('/x?X-Amz-Signature=REDACTED&a=1');
  });
  it('leaves URLs without a query alone', () => {
    expect(redactUrl('/v2/')).toBe('/v2/');
  });
});
