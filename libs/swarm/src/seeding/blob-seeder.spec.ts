import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SwarmClient } from '../client/swarm-client.js';
import { createBlobTorrent, pieceLengthFor } from '../torrent/blob-torrent.js';
import { PieceHasher } from '../torrent/piece-hasher.js';
import { BlobSeeder, type SeedableBlobStore } from './blob-seeder.js';

const ANNOUNCE = ['http://127.0.0.1:6969/announce'];

describe(BlobSeeder.name, () => {
  let dir: string;
  let digest: string;
  let path: string;
  const data = randomBytes(4 * 1024 * 1024 + 4321);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'blob-seeder-'));
    const hex = createHash('sha256').update(data).digest('hex');
    digest = `sha256:${hex}`;
    path = join(dir, hex);
    await writeFile(path, data);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  function setup() {
    const seeded: string[] = [];
    const touched: string[] = [];
    const evictListeners: ((digest: string) => void)[] = [];
    const servedListeners: ((digest: string) => void)[] = [];
    const swarm = {
      seed: async (_metainfo: Uint8Array, _path: string) => {
        seeded.push(_path);
        return { infoHash: '' };
      },
      stopSeeding: async () => undefined,
      touch: (infoHash: string) => touched.push(infoHash),
    } as unknown as SwarmClient;
    const store: SeedableBlobStore = {
      path: () => path,
      size: () => data.length,
      pin: () => () => undefined,
      discardCorrupt: async () => true,
      onEvict: (listener) => {
        evictListeners.push(listener);
        return () => undefined;
      },
      onServed: (listener) => {
        servedListeners.push(listener);
        return () => undefined;
      },
    };
    return {
      seeder: new BlobSeeder(swarm, store, ANNOUNCE),
      seeded,
      touched,
      evict: (d: string) => evictListeners.forEach((l) => l(d)),
      serve: (d: string) => servedListeners.forEach((l) => l(d)),
    };
  }

  function piecesOf(bytes: Buffer): Buffer {
    const hasher = new PieceHasher(bytes.length, pieceLengthFor(bytes.length));
    hasher.update(bytes);
    return hasher.digest();
  }

  it('refreshes the seeding of a blob on every cache hit, as seedTtl says (issue #14 item 5)', async () => {
    const { seeder, touched, serve } = setup();
    serve(digest); // no torrent yet: nothing seeded, nothing to refresh
    expect(touched).toEqual([]);
    const torrent = await seeder.torrentFor(digest);
    serve(digest);
    serve(digest);
    expect(touched).toEqual([torrent.infoHash, torrent.infoHash]);
    serve('sha256:' + '0'.repeat(64));
    expect(touched).toHaveLength(2);
  });

  it('makes the torrent from offered piece hashes, without reading the file', async () => {
    const { seeder, seeded } = setup();
    // Hashes of other bytes of the same size: the torrent can only carry them if the file went unread.
    const other = piecesOf(randomBytes(data.length));
    seeder.offerPieces(digest, other);
    const torrent = await seeder.torrentFor(digest);
    expect(torrent.metainfo.includes(other)).toBe(true);
    expect(seeded).toEqual([path]);
    expect(await seeder.torrentFor(digest)).toBe(torrent);
  });

  it('gives the same torrent from offered hashes as from the file', async () => {
    const reference = await createBlobTorrent(path, digest.slice(7), data.length, ANNOUNCE);
    const { seeder } = setup();
    seeder.offerPieces(digest, piecesOf(data));
    const torrent = await seeder.torrentFor(digest);
    expect(torrent.infoHash).toBe(reference.infoHash);
    expect(torrent.metainfo.equals(reference.metainfo)).toBe(true);
  });

  it('hashes the file when no hashes are known, or the offered ones do not fit the size', async () => {
    const reference = await createBlobTorrent(path, digest.slice(7), data.length, ANNOUNCE);
    const plain = setup();
    expect((await plain.seeder.torrentFor(digest)).infoHash).toBe(reference.infoHash);
    const misfit = setup();
    misfit.seeder.offerPieces(digest, piecesOf(data).subarray(20));
    expect((await misfit.seeder.torrentFor(digest)).infoHash).toBe(reference.infoHash);
  });

  it('forgets offered hashes when the store drops the blob', async () => {
    const reference = await createBlobTorrent(path, digest.slice(7), data.length, ANNOUNCE);
    const { seeder, evict } = setup();
    seeder.offerPieces(digest, piecesOf(randomBytes(data.length)));
    evict(digest);
    expect((await seeder.torrentFor(digest)).infoHash).toBe(reference.infoHash);
  });
});
