import { describe, expect, it } from 'vitest';
import { parseRange } from './byte-range.js';
import { classifyPath, parseReference, validateDigest, validateName } from './oci-names.js';
import { OciError } from './oci.errors.js';

const D = `sha256:${'ab'.repeat(32)}`;

describe('oci names', () => {
  it('classifies nested names and leaves uploads and tags/list to pass-through', () => {
    expect(classifyPath('/v2/')).toEqual({ kind: 'base' });
    expect(classifyPath(`/v2/a/b/c/blobs/${D}`)).toEqual({ kind: 'blob', name: 'a/b/c', digest: D });
    expect(classifyPath('/v2/a/b/manifests/v1.0')).toEqual({ kind: 'manifest', name: 'a/b', reference: 'v1.0' });
    expect(classifyPath('/v2/a/blobs/uploads/')).toEqual({ kind: 'other' });
    expect(classifyPath('/v2/a/blobs/uploads/123')).toEqual({ kind: 'other' });
    expect(classifyPath('/v2/a/tags/list')).toEqual({ kind: 'other' });
  });

  it('validates names, tags and digests with OCI error codes', () => {
    expect(validateName('library/nginx')).toBe('library/nginx');
    for (const bad of ['UPPER', 'a//b', '-a', 'a/', 'a'.repeat(256)])
      expect(() => validateName(bad)).toThrow(expect.objectContaining({ code: 'NAME_INVALID', status: 400 }));
    expect(parseReference('latest')).toEqual({ kind: 'tag', tag: 'latest' });
    expect(parseReference(D)).toEqual({ kind: 'digest', digest: D });
    expect(() => parseReference('.bad')).toThrow(expect.objectContaining({ code: 'MANIFEST_INVALID' }));
    for (const bad of ['sha256:abc', 'sha256:' + 'A'.repeat(64), 'nope', 'sha512:' + 'a'.repeat(128)])
      expect(() => validateDigest(bad)).toThrow(expect.objectContaining({ code: 'DIGEST_INVALID' }));
  });
});

describe('parseRange', () => {
  it('parses single ranges, ignores multi-ranges and refuses unsatisfiable ones with 416', () => {
    expect(parseRange(undefined, 10)).toBeUndefined();
    expect(parseRange('bytes=0-4', 10)).toEqual({ start: 0, end: 4 });
    expect(parseRange('bytes=5-', 10)).toEqual({ start: 5, end: 9 });
    expect(parseRange('bytes=-3', 10)).toEqual({ start: 7, end: 9 });
    expect(parseRange('bytes=2-100', 10)).toEqual({ start: 2, end: 9 });
    expect(parseRange('bytes=0-1,4-5', 10)).toBeUndefined();
    for (const bad of ['bytes=10-', 'bytes=5-2', 'bytes=-0', 'items=0-1', 'bytes=-']) {
      let err: unknown;
      try {
        parseRange(bad, 10);
      } catch (e) {
        err = e;
      }
      expect(err, bad).toBeInstanceOf(OciError);
      expect((err as OciError).status).toBe(416);
    }
  });
});
