import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobTorrent, describeMetainfo, pieceLengthFor } from './blob-torrent.js';

const MiB = 1024 * 1024;

describe(createBlobTorrent.name, () => {
  let dir: string;
  let hex: string;
  const data = randomBytes(9 * MiB + 123);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'blob-torrent-'));
    hex = createHash('sha256').update(data).digest('hex');
    for (const host of ['host-a', 'host-b']) {
      await mkdir(join(dir, host));
      await writeFile(join(dir, host, hex), data);
    }
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('gives the same info hash and bytes for the same blob on different hosts and trackers', async () => {
    const a = await createBlobTorrent(join(dir, 'host-a', hex), hex, data.length, ['http://127.0.0.1:6969/announce']);
    const b = await createBlobTorrent(join(dir, 'host-b', hex), hex, data.length, ['http://127.0.0.1:6969/announce']);
    const c = await createBlobTorrent(join(dir, 'host-b', hex), hex, data.length, ['http://127.0.0.2:6969/announce', 'http://127.0.0.3:6969/announce']);
    expect(a.infoHash).toMatch(/^[0-9a-f]{40}$/);
    expect(b.metainfo.equals(a.metainfo)).toBe(true);
    expect(c.infoHash).toBe(a.infoHash);
    const summary = await describeMetainfo(c.metainfo);
    expect(summary).toMatchObject({ name: hex, length: data.length, pieceLength: 4 * MiB });
    expect(summary.announce).toEqual(['http://127.0.0.2:6969/announce', 'http://127.0.0.3:6969/announce']);
  });

  it('writes no public trackers when given none', async () => {
    const t = await createBlobTorrent(join(dir, 'host-a', hex), hex, data.length, []);
    expect((await describeMetainfo(t.metainfo)).announce).toEqual([]);
  });

  it('refuses a name that is not a digest and a size that does not match', async () => {
    expect(() => createBlobTorrent(join(dir, 'host-a', hex), 'not-hex', data.length, [])).toThrow(/sha256/);
    await expect(createBlobTorrent(join(dir, 'host-a', hex), hex, data.length + 1, [])).rejects.toThrow(/expected/);
  });

  it('rejects metainfo that is not a blob torrent', async () => {
    await expect(describeMetainfo(Buffer.from('garbage'))).rejects.toThrow(/not a torrent/);
  });
});

describe(pieceLengthFor.name, () => {
  it.each([
    [0, 4 * MiB],
    [1, 4 * MiB],
    [1024 * MiB, 4 * MiB],
    [1024 * MiB + 1, 8 * MiB],
    [2048 * MiB, 8 * MiB],
    [2048 * MiB + 1, 16 * MiB],
    [64 * 1024 * MiB, 16 * MiB],
  ])('a %d-byte blob gets %d-byte pieces', (size, expected) => {
    expect(pieceLengthFor(size)).toBe(expected);
  });

  it('rejects sizes that are not byte counts', () => {
    expect(() => pieceLengthFor(-1)).toThrow(RangeError);
    expect(() => pieceLengthFor(1.5)).toThrow(RangeError);
  });
});
