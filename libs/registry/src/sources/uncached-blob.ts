import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { BadOriginResponseError, DigestMismatchError } from '../oci/oci.errors.js';
import type { ByteRange } from '../oci/byte-range.js';
import type { BlobFetcher, BlobRequest, FetchedBlob, OpenedBlob } from './blob-source.js';

/**
 * A blob served straight from a fetcher without touching the cache (no room on disk). Whole-blob
 * reads are sha256-checked and the final chunk is held back until the hash matches, so a client
 * never receives a complete wrong blob — the same promise the cache path makes.
 *
 * The fetcher is asked for the blob before this resolves, i.e. before the client is answered: an
 * origin that is down or silent (headers timeout) becomes a clear 503 UNAVAILABLE instead of a 200
 * whose body never comes and a connection cut half a minute later (issue #12 item 5). The first
 * read from offset 0 (the usual whole-blob GET) uses that response; a Range read from elsewhere
 * asks again from its own offset.
 */
export async function uncachedBlob(
  fetcher: BlobFetcher,
  request: BlobRequest,
  size: number,
  onServed?: (source: string, n: number) => void,
): Promise<OpenedBlob> {
  const firstAbort = new AbortController();
  let first: FetchedBlob | undefined = await fetcher.fetch(request, 0, firstAbort.signal);
  if (!first) throw new BadOriginResponseError(`${fetcher.name} cannot serve ${request.digest}`);
  const dropFirst = () => {
    first?.stream.destroy();
    first = undefined;
  };
  const readCounted = (range: ByteRange | undefined, served: typeof onServed): Readable => {
    const start = range?.start ?? 0;
    const end = range?.end ?? size - 1;
    const out = new PassThrough();
    const prefetched = start === 0 ? first : undefined;
    const ac = prefetched ? firstAbort : new AbortController();
    if (prefetched) first = undefined;
    else dropFirst();
    out.once('close', () => ac.abort(new Error('client went away')));
    void pump(fetcher, request, start, end, size, out, ac.signal, served, prefetched).catch((err: unknown) => out.destroy(err as Error));
    return out;
  };
  const read = (range?: ByteRange) => readCounted(range, onServed);
  return {
    size,
    source: fetcher.name,
    read,
    drain: () => finished(readCounted(undefined, undefined).resume()),
    async copyTo(dest: Writable, range?: ByteRange) {
      for await (const chunk of read(range)) if (!dest.write(chunk)) await once(dest, 'drain');
    },
    // A HEAD, or a response that failed before reading, never consumes the prefetched body.
    release: dropFirst,
  };
}

async function pump(
  fetcher: BlobFetcher,
  request: BlobRequest,
  start: number,
  end: number,
  size: number,
  out: PassThrough,
  signal: AbortSignal,
  onServed?: (source: string, n: number) => void,
  prefetched?: FetchedBlob,
): Promise<void> {
  const fetched = prefetched ?? (await fetcher.fetch(request, start, signal));
  if (!fetched) throw new BadOriginResponseError(`${fetcher.name} cannot serve ${request.digest}`);
  const hash = start === 0 && end === size - 1 ? createHash('sha256') : undefined;
  let left = end - start + 1;
  let held: Buffer | undefined;
  try {
    for await (const chunk of fetched.stream as AsyncIterable<Buffer>) {
      const part = chunk.length > left ? chunk.subarray(0, left) : chunk;
      left -= part.length;
      hash?.update(part);
      if (held) {
        onServed?.(fetcher.name, held.length);
        if (!out.write(held)) await once(out, 'drain', { signal });
      }
      held = part;
      if (left <= 0) break;
    }
  } finally {
    fetched.stream.destroy();
  }
  if (left > 0) throw new BadOriginResponseError(`${fetcher.name} ended ${left} bytes early`);
  if (hash) {
    const actual = `sha256:${hash.digest('hex')}`;
    if (actual !== request.digest) throw new DigestMismatchError(request.digest, actual);
  }
  if (held) onServed?.(fetcher.name, held.length);
  out.end(held);
}
