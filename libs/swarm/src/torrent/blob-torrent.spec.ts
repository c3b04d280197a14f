import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bencode from 'bencode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidMetainfoError } from '../swarm.errors.js';
import { createBlobTorrent, createBlobTorrentFromPieces, describeMetainfo, parseBlobMetainfo, pieceLengthFor } from './blob-torrent.js';
import { PieceHasher } from './piece-hasher.js';

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
    const c = await createBlobTorrent(join(dir, 'host-b', hex), hex, data.length, [
      'http://127.0.0.2:6969/announce',
      'http://127.0.0.3:6969/announce',
    ]);
    expect(a.infoHash).toMatch(/^[0-9a-f]{40}$/);
    expect(b.metainfo.equals(a.metainfo)).toBe(true);
    expect(c.infoHash).toBe(a.infoHash);
    const summary = await describeMetainfo(c.metainfo);
    expect(summary).toMatchObject({ name: hex, length: data.length, pieceLength: MiB });
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
    [0, MiB],
    [1, MiB],
    [256 * MiB, MiB],
    [256 * MiB + 1, 2 * MiB],
    [512 * MiB + 1, 4 * MiB],
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

describe(createBlobTorrentFromPieces.name, () => {
  let dir: string;
  const blobs = new Map<string, { hex: string; data: Buffer }>();
  const sizes = { empty: 0, small: 5_000, onePiece: MiB, several: 3 * MiB + 777 };
  const announces: [string, string[]][] = [
    ['no announce', []],
    ['two announce URLs', ['http://127.0.0.1:6969/announce', 'http://127.0.0.2:6969/announce']],
  ];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'blob-torrent-pieces-'));
    for (const [label, size] of Object.entries(sizes)) {
      const data = randomBytes(size);
      const hex = createHash('sha256').update(data).digest('hex');
      await writeFile(join(dir, hex), data);
      blobs.set(label, { hex, data });
    }
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  /** Piece hashes as the proxy gets them: fed in odd-sized chunks while the blob streams by. */
  function hashed(data: Buffer): Buffer {
    const hasher = new PieceHasher(data.length, pieceLengthFor(data.length));
    for (let off = 0; off < data.length; off += 65_537) hasher.data(data.subarray(off, off + 65_537));
    return hasher.digest();
  }

  for (const label of Object.keys(sizes)) {
    for (const [what, announce] of announces) {
      it(`makes the same bytes and info hash as createBlobTorrent: ${label} blob, ${what}`, async () => {
        const { hex, data } = blobs.get(label)!;
        const reference = await createBlobTorrent(join(dir, hex), hex, data.length, announce);
        const made = createBlobTorrentFromPieces(hex, data.length, hashed(data), announce);
        expect(made.infoHash).toBe(reference.infoHash);
        expect(made.metainfo.equals(reference.metainfo)).toBe(true);
      });
    }
  }

  it('refuses a name that is not a digest and piece hashes of the wrong length', () => {
    const { hex, data } = blobs.get('several')!;
    const pieces = hashed(data);
    expect(() => createBlobTorrentFromPieces('not-hex', data.length, pieces, [])).toThrow(InvalidMetainfoError);
    expect(() => createBlobTorrentFromPieces(hex, data.length, pieces.subarray(20), [])).toThrow(/expected 80/);
    expect(() => createBlobTorrentFromPieces(hex, data.length + 4 * MiB, pieces, [])).toThrow(InvalidMetainfoError);
  });
});

describe(parseBlobMetainfo.name, () => {
  const hex = 'ab'.repeat(32);
  const pieceLength = MiB;
  const length = 2 * pieceLength + 1;
  const pieces = randomBytes(60);
  const info = { length, name: hex, 'piece length': pieceLength, pieces, private: 1 };
  const encode = (value: unknown) => Buffer.from(bencode.encode(value));
  const withInfo = (changes: Record<string, unknown>) => encode({ 'created by': 'x', info: { ...info, ...changes } });

  it('reads back what createBlobTorrentFromPieces makes, with the same info hash as describeMetainfo', async () => {
    const made = createBlobTorrentFromPieces(hex, length, pieces, ['http://127.0.0.1:6969/announce']);
    const parsed = parseBlobMetainfo(made.metainfo);
    expect(parsed).toMatchObject({ infoHash: made.infoHash, name: hex, length, pieceLength });
    expect(parsed.infoHashBuf.toString('hex')).toBe(made.infoHash);
    expect(parsed.pieces.equals(pieces)).toBe(true);
    expect(parsed.infoHash).toBe((await describeMetainfo(made.metainfo)).infoHash);
    expect(parseBlobMetainfo(new Uint8Array(made.metainfo)).infoHash).toBe(made.infoHash);
  });

  it('hashes the info dict as it appears in the metainfo', () => {
    const metainfo = withInfo({ source: 'extra key kept' });
    const start = metainfo.indexOf('4:info') + 6;
    const expected = createHash('sha1')
      .update(metainfo.subarray(start, metainfo.length - 1))
      .digest('hex');
    expect(parseBlobMetainfo(metainfo).infoHash).toBe(expected);
  });

  it('accepts an empty blob with no pieces', () => {
    expect(parseBlobMetainfo(withInfo({ length: 0, pieces: Buffer.alloc(0) }))).toMatchObject({ length: 0, pieces: Buffer.alloc(0) });
  });

  it.each<[string, Buffer]>([
    ['empty input', Buffer.alloc(0)],
    ['not bencode', Buffer.from('garbage')],
    ['a list', encode([1, 2])],
    ['no info', encode({ announce: 'x' })],
    ['info not a dict', encode({ info: 'x' })],
    ['multi-file', withInfo({ length: undefined, files: [{ length, path: [hex] }] })],
    ['multi-file with a length too', withInfo({ files: [{ length, path: [hex] }] })],
    ['bad name', withInfo({ name: 'ab'.repeat(31) })],
    ['upper-case name', withInfo({ name: hex.toUpperCase() })],
    ['no name', withInfo({ name: undefined })],
    ['negative length', withInfo({ length: -1 })],
    ['length not an integer', withInfo({ length: 'many' })],
    ['length beyond 2^53', withInfo({ length: 2 ** 60 })],
    ['piece length not a power of two', withInfo({ 'piece length': 3 * MiB })],
    ['piece length below 16 KiB', withInfo({ 'piece length': 8 * 1024, pieces: randomBytes(20 * Math.ceil(length / 8192)) })],
    ['piece length above 64 MiB', withInfo({ 'piece length': 128 * MiB, pieces: randomBytes(20) })],
    ['one piece hash too few', withInfo({ pieces: pieces.subarray(20) })],
    ['one piece hash too many', withInfo({ pieces: Buffer.concat([pieces, pieces.subarray(0, 20)]) })],
    ['pieces not a multiple of 20', withInfo({ pieces: pieces.subarray(1) })],
    ['pieces for an empty blob', withInfo({ length: 0 })],
    ['no pieces', withInfo({ pieces: undefined })],
    [
      'non-canonical info (keys out of order)',
      Buffer.from(`d4:infod4:name64:${hex}6:lengthi${length}e12:piece lengthi${pieceLength}e6:pieces60:${'x'.repeat(60)}ee`),
    ],
    [
      'length only inherited from a __proto__ key',
      Buffer.from(`d4:infod9:__proto__d6:lengthi0ee4:name64:${hex}12:piece lengthi${pieceLength}e6:pieces0:ee`),
    ],
  ])('rejects %s', (_what, metainfo) => {
    expect(() => parseBlobMetainfo(metainfo)).toThrow(InvalidMetainfoError);
  });
});
