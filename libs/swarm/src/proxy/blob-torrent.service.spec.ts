import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  BlobCache,
  BlobSourceChain,
  CachedBlobSource,
  FillingBlobSource,
  OciError,
  OriginSet,
  type BlobAccessAuthorizer,
  type BlobFetcher,
  type BlobRequest,
  type FetchedBlob,
} from '#registry';
import type { BlobSeeder } from '../seeding/blob-seeder.js';
import { BlobTorrentService } from './blob-torrent.service.js';

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** The origin as a fetcher: the blob in 64 KiB chunks, one per macrotask (so a fill takes a while); `corrupt` flips its last byte. */
class SlowOrigin implements BlobFetcher {
  readonly name = 'origin';
  constructor(
    private readonly data: Buffer,
    private readonly corrupt = false,
  ) {}

  fetch(_request: BlobRequest, offset: number): Promise<FetchedBlob> {
    const bytes = Buffer.from(this.data.subarray(offset));
    if (this.corrupt) bytes[bytes.length - 1] ^= 1;
    const stream = new Readable({ read() {} });
    let pos = 0;
    const step = () => {
      if (pos >= bytes.length) {
        stream.push(null);
        return;
      }
      stream.push(bytes.subarray(pos, pos + 64 * 1024));
      pos += 64 * 1024;
      setImmediate(step);
    };
    setImmediate(step);
    return Promise.resolve({ size: this.data.length, stream });
  }
}

describe(BlobTorrentService.name, () => {
  let dir: string;
  let cache: BlobCache;
  const data = randomBytes(3 * 1024 * 1024 + 77);
  const digest = digestOf(data);
  const torrent = { metainfo: Buffer.from('d4:infode'), infoHash: 'f'.repeat(40) };

  /** The service over a real cache and fill; the seeder records whether the blob was committed when asked for its torrent. */
  const service = (origin: SlowOrigin) => {
    // What the proxy counts in p2p_blob_bytes_served_total, its relay traffic.
    const served = { bytes: 0 };
    const count = (_source: string, n: number) => (served.bytes += n);
    const filling = new FillingBlobSource(cache, [origin], { stallTimeoutMs: 10_000, onServed: count });
    const chain = new BlobSourceChain([new CachedBlobSource(cache, count), filling]);
    const asked: { committed: boolean }[] = [];
    const seeder = {
      torrentFor: (d: string) => {
        asked.push({ committed: cache.has(d) });
        return Promise.resolve(torrent);
      },
    } as unknown as BlobSeeder;
    const authorizer = { authorize: () => Promise.resolve(data.length) } as unknown as BlobAccessAuthorizer;
    const svc = new BlobTorrentService(new OriginSet('http://127.0.0.1:1'), authorizer, chain, seeder);
    return { svc, asked, served };
  };
  const query = { digest, repository: 'a/b', ns: undefined, authorization: undefined };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'blob-torrent-service-'));
    cache = new BlobCache({ dir, maxBytes: 0, highWatermark: 0.9, lowWatermark: 0.8 });
    await cache.init();
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('waits for a cold blob to be verified and committed, serving nothing: no relay bytes counted', async () => {
    const { svc, asked, served } = service(new SlowOrigin(data));
    await expect(svc.torrent(query)).resolves.toBe(torrent);
    expect(asked).toEqual([{ committed: true }]);
    expect((await readFile(cache.path(digest) ?? '')).equals(data)).toBe(true);
    // It used to count the whole blob as relayed (the proxy's relay panel showed 1.2–1.7× the real relay).
    expect(served.bytes).toBe(0);
    // A cached blob: nothing read, nothing counted.
    await expect(svc.torrent(query)).resolves.toBe(torrent);
    expect(served.bytes).toBe(0);
  });

  it('answers a typed 502 and asks for no torrent when the fill proves wrong', async () => {
    const { svc, asked } = service(new SlowOrigin(data, true));
    const err: unknown = await svc.torrent(query).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OciError);
    expect((err as OciError).status).toBe(502);
    expect(asked).toEqual([]);
    expect(cache.has(digest)).toBe(false);
  });

  it('still relays the whole blob while the fill runs, and counts it', async () => {
    const { svc, served } = service(new SlowOrigin(data));
    const relayed = await svc.relay(query, undefined);
    const parts: Buffer[] = [];
    for await (const chunk of relayed.stream) parts.push(chunk as Buffer);
    relayed.opened.release();
    expect(Buffer.concat(parts).equals(data)).toBe(true);
    expect(served.bytes).toBe(data.length);
  });
});
