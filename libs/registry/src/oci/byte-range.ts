import { OciError } from './oci.errors.js';

/** Inclusive byte range within a blob. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Parses a `Range` header against a blob of `size` bytes. Returns undefined for "whole blob" (no
 * header, or a multi-range request, which RFC 9110 lets us answer with 200). Unsatisfiable → 416.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) {
    if (/^bytes=[\d\s,-]+$/.test(header.trim())) return undefined;
    throw unsatisfiable(size);
  }
  const [, a, b] = m;
  if (a === '' && b === '') throw unsatisfiable(size);
  let start: number;
  let end: number;
  if (a === '') {
    const suffix = Number(b);
    if (suffix === 0 || size === 0) throw unsatisfiable(size);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(a);
    end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
    if (start >= size || (b !== '' && Number(b) < start)) throw unsatisfiable(size);
  }
  return { start, end };
}

function unsatisfiable(size: number): OciError {
  return new OciError(416, 'RANGE_INVALID', 'requested range not satisfiable', undefined, { 'content-range': `bytes */${size}` });
}
