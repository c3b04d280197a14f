import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobCache, fileIdentity } from '../cache/blob-cache.js';
import { ClientCredentials } from '../origin/client-credentials.js';
import type { BlobFetcher, BlobRequest, FetchedBlob } from './blob-source.js';
import { BlobSourceChain } from './blob-source.js';
import { CachedBlobCorruptError, CachedBlobSource } from './cached-blob.source.js';
import { FillingBlobSource } from './filling-blob.source.js';

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Serves `data` from memory and counts the fetches (the origin of these tests). */
class CountingFetcher implements BlobFetcher {
  readonly name = 'origin';
  fetches = 0;
  constructor(private readonly data: Buffer) {}
  fetch(_req: BlobRequest, offset: number): Promise<FetchedBlob> {
    this.fetches++;
    return Promise.resolve({ size: this.data.length, stream: Readable.from([Buffer.from(this.data.subarray(offset))]) });
  }
}

/** Collects what a copy wrote; `end()` is not called by copyTo, so `ended` stays false on its own. */
class Sink extends Writable {
  readonly parts: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.parts.push(Buffer.from(chunk));
    cb();
  }
  get bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

async function flipByte(path: string, at: number): Promise<void> {
  const fh = await open(path, 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, at);
  b[0] ^= 0xff;
  await fh.write(b, 0, 1, at);
  await fh.close();
}

describe(CachedBlobSource.name, () => {
  let dir: string;
  let cache: BlobCache;
  const data = randomBytes(3 * 1024 * 1024 + 77);
  const digest = digestOf(data);
  const request = (): BlobRequest => ({
    origin: { base: 'http://127.0.0.1:1', host: '127.0.0.1:1' },
    repository: 'a/b',
    digest,
    credentials: ClientCredentials.anonymous,
    size: data.length,
  });
  const corrupt: string[] = [];

  /** Puts `data` in the cache the way a verified fill does. */
  async function commit(): Promise<string> {
    const temp = await cache.tempFileInOwnDir(digest);
    await writeFile(temp, data);
    const path = await cache.commitVerified(digest, temp);
    await cache.removeTempDir(temp);
    return path;
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cached-spec-'));
    cache = new BlobCache({ dir, maxBytes: 0, highWatermark: 0.9, lowWatermark: 0.8 });
    await cache.init();
    corrupt.length = 0;
    cache.onCorrupt((d, reason) => corrupt.push(`${d} ${reason}`));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('serves a verified file whole and by range', async () => {
    await commit();
    const source = new CachedBlobSource(cache);
    const opened = (await source.open(request()))!;
    const whole = new Sink();
    await opened.copyTo(whole);
    const part = new Sink();
    await opened.copyTo(part, { start: 100, end: 2 * 1024 * 1024 });
    opened.release();
    expect(whole.bytes.equals(data)).toBe(true);
    expect(part.bytes.equals(data.subarray(100, 2 * 1024 * 1024 + 1))).toBe(true);
    expect(corrupt).toEqual([]);
  });

  it('tells the cache of each hit (the seeder refreshes seeding on it), not of a miss (issue #14 item 5)', async () => {
    const served: string[] = [];
    cache.onServed((d) => served.push(d));
    const source = new CachedBlobSource(cache);
    expect(await source.open(request())).toBeUndefined();
    expect(served).toEqual([]);
    await commit();
    (await source.open(request()))?.release();
    (await source.open(request()))?.release();
    expect(served).toEqual([digest, digest]);
  });

  it('a file changed on disk since it was verified is evicted and the request falls through to a fill (right bytes, one fetch)', async () => {
    const path = await commit();
    await flipByte(path, 12345);
    const origin = new CountingFetcher(data);
    const chain = new BlobSourceChain([new CachedBlobSource(cache), new FillingBlobSource(cache, [origin], { stallTimeoutMs: 5000 })]);
    const opened = (await chain.open(request()))!;
    expect(opened.source).toBe('origin');
    const out = new Sink();
    await opened.copyTo(out);
    opened.release();
    expect(out.bytes.equals(data)).toBe(true);
    expect(origin.fetches).toBe(1);
    expect(corrupt).toEqual([`${digest} changed on disk since it was verified`]);
    await expect.poll(async () => (await readFile(path)).equals(data)).toBe(true);
  });

  it('a whole-blob read of a file whose bytes went bad unnoticed (same identity: bit rot) never delivers the last chunk, and evicts it', async () => {
    const path = await commit();
    await flipByte(path, data.length - 10);
    // As if the disk flipped the bit itself: the recorded identity is the current one.
    cache.markVerified(digest, fileIdentity(await stat(path)));
    const source = new CachedBlobSource(cache);
    const opened = (await source.open(request()))!;
    const out = new Sink();
    await expect(opened.copyTo(out)).rejects.toBeInstanceOf(CachedBlobCorruptError);
    opened.release();
    expect(out.bytes.length).toBeLessThan(data.length);
    expect(out.bytes.equals(data.subarray(0, out.bytes.length))).toBe(true);
    expect(cache.has(digest)).toBe(false);
    expect(corrupt).toEqual([`${digest} does not match its digest`]);
    // The stream form (the proxy's relay) holds the last chunk back the same way.
    await commit();
    await flipByte(path, data.length - 10);
    cache.markVerified(digest, fileIdentity(await stat(path)));
    const again = (await source.open(request()))!;
    const streamed: Buffer[] = [];
    await expect(
      (async () => {
        for await (const c of again.read()) streamed.push(c as Buffer);
      })(),
    ).rejects.toBeInstanceOf(CachedBlobCorruptError);
    again.release();
    expect(Buffer.concat(streamed).length).toBeLessThan(data.length);
  });

  it('a blob found corrupt on disk at start is hashed before its first use and evicted', async () => {
    const path = await commit();
    await flipByte(path, 1);
    const restarted = new BlobCache({ dir, maxBytes: 0, highWatermark: 0.9, lowWatermark: 0.8 });
    await restarted.init();
    const found: string[] = [];
    restarted.onCorrupt((d, reason) => found.push(reason));
    expect(restarted.verified(digest)).toBeUndefined();
    expect(await new CachedBlobSource(restarted).open(request())).toBeUndefined();
    expect(restarted.has(digest)).toBe(false);
    expect(found).toEqual(['does not match its digest']);
  });

  it('a good blob found on disk at start is verified once, then served', async () => {
    await commit();
    const restarted = new BlobCache({ dir, maxBytes: 0, highWatermark: 0.9, lowWatermark: 0.8 });
    await restarted.init();
    const source = new CachedBlobSource(restarted);
    const [a, b] = await Promise.all([source.open(request()), source.open(request())]);
    expect(restarted.verified(digest)).toBeDefined();
    const out = new Sink();
    await a!.copyTo(out, { start: 5, end: 9 });
    a!.release();
    b!.release();
    expect(out.bytes.equals(data.subarray(5, 10))).toBe(true);
  });

  it('a deleted or truncated file is evicted at open and the request falls through', async () => {
    const path = await commit();
    await rm(path);
    expect(await new CachedBlobSource(cache).open(request())).toBeUndefined();
    expect(cache.has(digest)).toBe(false);
    await commit();
    await truncate(path, 1000);
    expect(await new CachedBlobSource(cache).open(request())).toBeUndefined();
    expect(corrupt).toEqual([`${digest} is missing`, `${digest} has 1000 bytes, expected ${data.length}`]);
  });

  it('a file cut short during a read fails the read and is evicted', async () => {
    const path = await commit();
    const opened = (await new CachedBlobSource(cache).open(request()))!;
    const slow = new PassThrough({ highWaterMark: 1 });
    const copying = opened.copyTo(slow);
    copying.catch(() => undefined);
    await truncate(path, 1024 * 1024);
    slow.resume();
    await expect(copying).rejects.toBeInstanceOf(CachedBlobCorruptError);
    opened.release();
    expect(cache.has(digest)).toBe(false);
  });

  it('a reader late to find its copy corrupt does not evict the good file a refill committed meanwhile', async () => {
    const path = await commit();
    const stale = fileIdentity(await stat(path));
    await rm(path);
    await commit();
    expect(await cache.discardCorrupt(digest, stale, 'late')).toBe(false);
    expect(cache.has(digest)).toBe(true);
  });
});
