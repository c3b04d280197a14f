import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobCache } from '../cache/blob-cache.js';
import { DigestMismatchError } from '../oci/oci.errors.js';
import { ClientCredentials } from '../origin/client-credentials.js';
import type { BlobFetcher, BlobRequest, FetchedBlob, FillTarget, StoredUntil } from './blob-source.js';
import { BlobSourceChain } from './blob-source.js';
import { CachedBlobSource } from './cached-blob.source.js';
import { FillingBlobSource } from './filling-blob.source.js';

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** In-memory fetcher: serves `data` from any offset, optionally dying after `failAfter` bytes or going silent. */
class FakeFetcher implements BlobFetcher {
  calls: number[] = [];
  signals: AbortSignal[] = [];
  constructor(
    readonly name: string,
    private readonly data: Buffer | undefined,
    private readonly behaviour: { failAfter?: number; stallAfter?: number; corrupt?: boolean } = {},
  ) {}

  async fetch(_req: BlobRequest, offset: number, signal: AbortSignal): Promise<FetchedBlob | undefined> {
    this.calls.push(offset);
    this.signals.push(signal);
    if (!this.data) return undefined;
    const bytes = Buffer.from(this.data.subarray(offset));
    if (this.behaviour.corrupt) bytes[bytes.length - 1] ^= 1;
    const { failAfter, stallAfter } = this.behaviour;
    const data = bytes;
    const stream = new Readable({ read() {} });
    const chunk = 64 * 1024;
    let pos = 0;
    const step = () => {
      if (failAfter !== undefined && pos >= failAfter) return stream.destroy(new Error('peer went away'));
      if (stallAfter !== undefined && pos >= stallAfter) return;
      if (pos >= data.length) return stream.push(null);
      stream.push(data.subarray(pos, pos + chunk));
      pos += chunk;
      setImmediate(step);
    };
    setImmediate(step);
    return { size: this.data.length, stream };
  }
}

/**
 * A fetcher that writes into the fill's own file (as a torrent download does) and reports how far
 * it got; `lie` makes it report bytes it never wrote correctly; `dieAfter` stops it mid-blob.
 */
class InPlaceFetcher implements BlobFetcher {
  readonly name = 'peer';
  targets: (FillTarget | undefined)[] = [];
  writesAfterStop = 0;
  stopped = false;
  constructor(
    private readonly data: Buffer,
    private readonly behaviour: { lie?: boolean; dieAfter?: number } = {},
  ) {}

  async fetch(_req: BlobRequest, offset: number, _signal: AbortSignal, target?: FillTarget): Promise<FetchedBlob | undefined> {
    this.targets.push(target);
    if (!target) return undefined;
    const fd = await open(target.path, 'r+');
    const { data, behaviour } = this;
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- an async generator cannot be an arrow function
    const self = this;
    async function* marks(): AsyncGenerator<StoredUntil> {
      try {
        const step = 200 * 1024;
        for (let pos = offset; pos < data.length; pos += step) {
          if (behaviour.dieAfter !== undefined && pos >= behaviour.dieAfter) throw new Error('swarm went away');
          const part = Buffer.from(data.subarray(pos, pos + step));
          if (behaviour.lie) part[0] ^= 1;
          await fd.write(part, 0, part.length, pos);
          if (self.stopped) self.writesAfterStop++;
          yield { storedUntil: pos + part.length };
        }
      } finally {
        await fd.close();
      }
    }
    return {
      size: data.length,
      stream: Readable.from(marks(), { objectMode: true }),
      stop: async () => {
        self.stopped = true;
      },
    };
  }
}

async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe(FillingBlobSource.name, () => {
  let dir: string;
  let cache: BlobCache;
  const data = randomBytes(1024 * 1024 + 123);
  const digest = digestOf(data);
  const request = (): BlobRequest => ({
    origin: { base: 'http://127.0.0.1:1', host: '127.0.0.1:1' },
    repository: 'a/b',
    digest,
    credentials: ClientCredentials.anonymous,
  });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fill-spec-'));
    cache = new BlobCache({ dir, maxBytes: 0, highWatermark: 0.9, lowWatermark: 0.8 });
    await cache.init();
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('switches fetcher mid-blob, continuing from the byte already written, and caches the verified blob', async () => {
    const swarm = new FakeFetcher('peer', data, { failAfter: 300 * 1024 });
    const origin = new FakeFetcher('origin', data);
    const source = new FillingBlobSource(cache, [swarm, origin], { stallTimeoutMs: 2000 });
    const opened = (await source.open(request()))!;
    expect(opened.size).toBe(data.length);
    const body = await readAll(opened.read());
    opened.release();
    expect(body.equals(data)).toBe(true);
    expect(swarm.calls).toEqual([0]);
    expect(swarm.signals[0].aborted).toBe(true);
    expect(origin.signals[0].aborted).toBe(false);
    expect(origin.calls).toHaveLength(1);
    expect(origin.calls[0]).toBeGreaterThan(0);
    expect((await readFile(cache.path(digest)!)).equals(data)).toBe(true);
  });

  it('abandons a stalled fetcher after the stall timeout', async () => {
    const stalled = new FakeFetcher('peer', data, { stallAfter: 128 * 1024 });
    const origin = new FakeFetcher('origin', data);
    const source = new FillingBlobSource(cache, [stalled, origin], { stallTimeoutMs: 200 });
    const opened = (await source.open(request()))!;
    expect((await readAll(opened.read())).equals(data)).toBe(true);
    opened.release();
    expect(origin.calls[0]).toBe(128 * 1024);
  });

  it('waits for a fetcher that says it is still joining, and applies the stall rule once it stops saying so', async () => {
    // Silent for 600 ms (3 stall timeouts) while "joining", then delivers: no switch to the origin.
    const joiner: BlobFetcher = {
      name: 'swarm',
      async fetch() {
        const started = Date.now();
        const stream = Readable.from(
          (async function* () {
            await new Promise((r) => setTimeout(r, 600));
            yield data;
          })(),
        );
        return { size: data.length, stream, joining: () => Date.now() - started < 1000 };
      },
    };
    const origin = new FakeFetcher('origin', data);
    const source = new FillingBlobSource(cache, [joiner, origin], { stallTimeoutMs: 200 });
    const opened = (await source.open(request()))!;
    expect((await readAll(opened.read())).equals(data)).toBe(true);
    opened.release();
    expect(origin.calls).toEqual([]);

    // A source that stays silent past its own grace period is abandoned after all.
    const dead: BlobFetcher = {
      name: 'swarm',
      async fetch() {
        const started = Date.now();
        return { size: data.length, stream: new Readable({ read() {} }), joining: () => Date.now() - started < 300 };
      },
    };
    const other = randomBytes(4096);
    const origin2 = new FakeFetcher('origin', other);
    const req2 = { ...request(), digest: digestOf(other), size: other.length };
    const deadSource = new FillingBlobSource(cache, [dead, origin2], { stallTimeoutMs: 200 });
    const opened2 = (await deadSource.open(req2))!;
    expect((await readAll(opened2.read())).equals(other)).toBe(true);
    opened2.release();
    expect(origin2.calls).toEqual([0]);
  });

  it('abandons a stalled fetcher whose stream never finishes destroying (Readable.from over a stuck generator)', async () => {
    const stuck: BlobFetcher = {
      name: 'swarm',
      async fetch() {
        const head = data.subarray(0, 64 * 1024);
        // After one chunk the generator awaits forever; Readable.from's destroy waits on that await.
        const stream = Readable.from(
          (async function* () {
            yield head;
            await new Promise(() => undefined);
          })(),
        );
        return { size: data.length, stream };
      },
    };
    const origin = new FakeFetcher('origin', data);
    const source = new FillingBlobSource(cache, [stuck, origin], { stallTimeoutMs: 200 });
    const opened = (await source.open(request()))!;
    expect((await readAll(opened.read())).equals(data)).toBe(true);
    opened.release();
    expect(origin.calls[0]).toBe(64 * 1024);
  });

  it('skips fetchers that cannot serve (undefined) and shares one fill between concurrent readers and ranges', async () => {
    const none = new FakeFetcher('peer', undefined);
    const origin = new FakeFetcher('origin', data);
    const source = new FillingBlobSource(cache, [none, origin], { stallTimeoutMs: 2000 });
    const opens = await Promise.all(Array.from({ length: 5 }, () => source.open(request())));
    const bodies = await Promise.all(opens.map((o, i) => readAll(o!.read(i === 4 ? { start: 1000, end: 99_999 } : undefined))));
    opens.forEach((o) => o!.release());
    for (const b of bodies.slice(0, 4)) expect(b.equals(data)).toBe(true);
    expect(bodies[4].equals(data.subarray(1000, 100_000))).toBe(true);
    expect(origin.calls).toEqual([0]);
    expect(none.calls).toEqual([0]);
  });

  it('an in-place fetcher writes the fill’s own file: the fill hashes what is there and caches it', async () => {
    const fetcher = new InPlaceFetcher(data);
    const source = new FillingBlobSource(cache, [fetcher], { stallTimeoutMs: 2000 });
    const opened = (await source.open(request()))!;
    const body = await readAll(opened.read());
    opened.release();
    expect(body.equals(data)).toBe(true);
    // The target is alone in its directory and named after the digest (a torrent can write to it).
    const target = fetcher.targets[0]!.path;
    expect(target.startsWith(cache.tmpDir)).toBe(true);
    expect(target.endsWith(`/${digest.slice(7)}`)).toBe(true);
    expect((await readFile(join(dir, 'blobs', 'sha256', digest.slice(7)))).equals(data)).toBe(true);
    expect(await readdir(cache.tmpDir)).toEqual([]);
  });

  it('hashes the file, not the fetcher’s word: wrong bytes in place are a digest mismatch, nothing cached', async () => {
    const source = new FillingBlobSource(cache, [new InPlaceFetcher(data, { lie: true })], { stallTimeoutMs: 2000 });
    const opened = (await source.open(request()))!;
    await expect(readAll(opened.read())).rejects.toBeInstanceOf(DigestMismatchError);
    opened.release();
    expect(cache.has(digest)).toBe(false);
    expect(await readdir(cache.tmpDir)).toEqual([]);
  });

  it('stops an in-place fetcher that fails before the next one writes the rest', async () => {
    const swarm = new InPlaceFetcher(data, { dieAfter: 400 * 1024 });
    const origin = new FakeFetcher('origin', data);
    const source = new FillingBlobSource(cache, [swarm, origin], { stallTimeoutMs: 2000 });
    const opened = (await source.open(request()))!;
    expect((await readAll(opened.read())).equals(data)).toBe(true);
    opened.release();
    expect(swarm.stopped).toBe(true);
    expect(swarm.writesAfterStop).toBe(0);
    // The origin continued from the first byte the swarm had not stored.
    expect(origin.calls).toEqual([400 * 1024]);
    expect(cache.has(digest)).toBe(true);
  });

  it('passes the observer option through to the fill: every byte once, in order, across a mid-blob switch', async () => {
    const seen: Buffer[] = [];
    const events: string[] = [];
    const swarm = new InPlaceFetcher(data, { dieAfter: 400 * 1024 });
    const origin = new FakeFetcher('origin', data);
    const source = new FillingBlobSource(cache, [swarm, origin], {
      stallTimeoutMs: 2000,
      observe: (req, size) => {
        events.push(`observe ${req.digest === digest} ${size}`);
        return { data: (c) => seen.push(Buffer.from(c)), committed: () => events.push('committed'), failed: () => events.push('failed') };
      },
    });
    const opened = (await source.open(request()))!;
    expect((await readAll(opened.read())).equals(data)).toBe(true);
    opened.release();
    expect(Buffer.concat(seen).equals(data)).toBe(true);
    expect(events).toEqual([`observe true ${data.length}`, 'committed']);
  });

  it('on a digest mismatch aborts every reader, never delivers the whole blob, and leaves nothing behind', async () => {
    const bad = new FakeFetcher('origin', data, { corrupt: true });
    const source = new FillingBlobSource(cache, [bad], { stallTimeoutMs: 2000 });
    const opened = (await source.open(request()))!;
    const received: Buffer[] = [];
    const reader = opened.read();
    reader.on('data', (c: Buffer) => received.push(c));
    await expect(new Promise((res, rej) => reader.on('end', res).on('error', rej))).rejects.toBeInstanceOf(DigestMismatchError);
    opened.release();
    expect(Buffer.concat(received).length).toBeLessThan(data.length);
    expect(cache.has(digest)).toBe(false);
    expect(await readdir(cache.tmpDir)).toEqual([]);
    // A later request starts a fresh fill.
    const good = new FillingBlobSource(cache, [new FakeFetcher('origin', data)], { stallTimeoutMs: 2000 });
    const chain = new BlobSourceChain([new CachedBlobSource(cache), good]);
    const again = (await chain.open(request()))!;
    expect((await readAll(again.read())).equals(data)).toBe(true);
    again.release();
    const hit = (await chain.open(request()))!;
    expect(hit.source).toBe('cache');
    hit.release();
  });
});

describe(BlobCache.name, () => {
  let dir: string;
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('evicts LRU unpinned blobs between watermarks, and rebuilds its index', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cache-spec-'));
    const cache = new BlobCache({ dir, maxBytes: 1000, highWatermark: 0.9, lowWatermark: 0.5 });
    await cache.init();
    const blobs = Array.from({ length: 4 }, () => randomBytes(250));
    const { writeFile } = await import('node:fs/promises');
    expect(cache.has(digestOf(blobs[0]))).toBe(false);
    const unpin = cache.pin(digestOf(blobs[0]));
    for (const b of blobs.slice(0, 3)) {
      const t = await cache.tempFileInOwnDir(digestOf(b));
      await writeFile(t, b);
      await cache.commitVerified(digestOf(b), t);
    }
    expect(cache.stats().bytes).toBe(750);
    const t = await cache.tempFileInOwnDir(digestOf(blobs[3]));
    await writeFile(t, blobs[3]);
    await cache.commitVerified(digestOf(blobs[3]), t);
    await cache.ensureRoom(0);
    // 1000 > 900: evict to ≤ 500, oldest first, skipping the pinned blob 0.
    expect(cache.has(digestOf(blobs[0]))).toBe(true);
    expect(cache.has(digestOf(blobs[1]))).toBe(false);
    expect(cache.has(digestOf(blobs[2]))).toBe(false);
    expect(cache.stats()).toMatchObject({ bytes: 500, entries: 2, evictions: 2 });
    unpin();
    const reopened = new BlobCache(cache.options);
    await reopened.init();
    expect(reopened.stats()).toMatchObject({ bytes: 500, entries: 2 });
  });
});
