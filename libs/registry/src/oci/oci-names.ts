import { OciError } from './oci.errors.js';

// From the OCI distribution spec: path components separated by '/', 255 characters at most.
const NAME = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]+$/;
const SHA256 = /^sha256:[a-f0-9]{64}$/;

/** Largest manifest accepted from the origin (Distribution's own limit). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export type Reference = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: string };

/** A `/v2/` path the mirror serves itself; everything else is passed through. */
export type MirrorRoute =
  | { kind: 'base' }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'other' };

export function validateName(name: unknown): string {
  // A repeated query parameter (`?repo=a&repo=b`) arrives as an array.
  if (typeof name !== 'string') throw new OciError(400, 'NAME_INVALID', 'invalid repository name (given more than once?)', {});
  if (name.length > 255 || !NAME.test(name))
    throw new OciError(400, 'NAME_INVALID', 'invalid repository name', { name: name.slice(0, 300) });
  return name;
}

/** Blobs are content-addressed by sha256 here: other algorithms are refused rather than trusted unverified. */
export function validateDigest(digest: string): string {
  if (!DIGEST.test(digest)) throw new OciError(400, 'DIGEST_INVALID', 'invalid digest', { digest: digest.slice(0, 200) });
  if (!SHA256.test(digest))
    throw new OciError(400, 'DIGEST_INVALID', 'only sha256 digests are supported', { digest: digest.slice(0, 200) });
  return digest;
}

export function parseReference(reference: string): Reference {
  if (reference.includes(':')) return { kind: 'digest', digest: validateDigest(reference) };
  if (!TAG.test(reference)) throw new OciError(400, 'MANIFEST_INVALID', 'invalid tag', { reference: reference.slice(0, 200) });
  return { kind: 'tag', tag: reference };
}

/** Hex part of a sha256 digest (the cache's file name). */
export function digestHex(digest: string): string {
  return validateDigest(digest).slice('sha256:'.length);
}

/**
 * Classifies a `/v2/...` path (without query). Names may be nested (`a/b/c`), so the route is
 * recognised by its last `manifests/<ref>` or `blobs/<digest>` segments.
 */
export function classifyPath(path: string): MirrorRoute {
  if (path === '/v2' || path === '/v2/') return { kind: 'base' };
  const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(path);
  if (!m) return { kind: 'other' };
  const [, rawName, what, ref] = m;
  const name = safeDecode(rawName);
  const reference = safeDecode(ref);
  if (what === 'blobs' && reference === 'uploads') return { kind: 'other' };
  return what === 'manifests' ? { kind: 'manifest', name, reference } : { kind: 'blob', name, digest: reference };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new OciError(400, 'NAME_INVALID', 'malformed path encoding');
  }
}
