import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bencode from 'bencode';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MetricsService, ThrottleService } from '#ops';
import { authProof, newNonce } from '../engine/peer-auth.js';
import { encodeBitfield, encodeExtended, encodeHandshake, encodePieceHeader, UNCHOKE, WireParser } from '../engine/wire-codec.js';
import { createBlobTorrent, parseBlobMetainfo } from '../torrent/blob-torrent.js';
import { TrackerServer } from '#tracker';
import { SwarmClient, type SwarmClientOptions } from './swarm-client.js';
import { SwarmMetrics } from './swarm.metrics.js';

const TOKEN = 'the-swarm-token';
const SIZE = 9 * 1024 * 1024 + 12_345; // ten 1 MiB pieces, the last one short

/** A private blob torrent of `data` with the given piece length (createBlobTorrent picks 1 MiB up to 256 MiB blobs). */
function torrentWithPieceLength(data: Buffer, name: string, pieceLength: number): Buffer {
  const hashes: Buffer[] = [];
  for (let off = 0; off < data.length; off += pieceLength)
    hashes.push(
      createHash('sha1')
        .update(data.subarray(off, off + pieceLength))
        .digest(),
    );
  return Buffer.from(
    bencode.encode({ info: { length: data.length, name, 'piece length': pieceLength, pieces: Buffer.concat(hashes), private: 1 } }),
  );
}

/**
 * One connection of a hand-made liar with the swarm token: a fresh peer id, the authenticated
 * handshake, "I have everything", and garbage for the first block asked; resolves once `answered`
 * (then the caller closes it). What a liar does that reconnects to dodge per-connection bans.
 */
function rawLiar(port: number, metainfo: Buffer): Promise<{ close(): void }> {
  const { infoHashBuf, length, pieceLength } = parseBlobMetainfo(metainfo);
  const pieces = Math.ceil(length / pieceLength);
  const id = Buffer.concat([Buffer.from('-LIAR00-'), randomBytes(12)]);
  const nonce = newNonce();
  const reserved = Buffer.alloc(8);
  reserved[5] |= 0x10;
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    let remoteId: Buffer | undefined;
    let answered = false;
    const parser = new WireParser({
      handshake: (h) => (remoteId = Buffer.from(h.peerId)),
      message: (m) => {
        if (m.type === 'extended' && m.id === 0) {
          const dict = bencode.decode(m.payload) as { m: Record<string, number>; p2p_nonce: Uint8Array };
          const proof = authProof(TOKEN, {
            infoHash: infoHashBuf,
            senderId: id,
            senderNonce: nonce,
            senderSide: 'initiator',
            receiverId: remoteId!,
            receiverNonce: Buffer.from(dict.p2p_nonce),
          });
          socket.write(encodeExtended(dict.m['p2p_auth'], proof));
          const bits = Buffer.alloc(Math.ceil(pieces / 8));
          for (let i = 0; i < pieces; i++) bits[i >> 3] |= 0x80 >> (i & 7);
          socket.write(encodeBitfield(bits));
          socket.write(UNCHOKE);
        } else if (m.type === 'request' && !answered) {
          answered = true;
          socket.write(Buffer.concat([encodePieceHeader(m.index, m.begin, m.length), randomBytes(m.length)]));
          resolve({ close: () => socket.destroy() });
        }
      },
      pieceStart: () => undefined,
      pieceEnd: () => undefined,
    });
    socket.on('data', (chunk: Buffer) => parser.push(chunk));
    socket.on('connect', () => {
      socket.write(encodeHandshake(infoHashBuf, id, reserved));
      socket.write(encodeExtended(0, bencode.encode({ m: { p2p_auth: 1 }, p2p_nonce: nonce, p2p_bs: 1024 * 1024 })));
    });
    socket.on('close', () => (answered ? undefined : reject(new Error('the leecher closed before asking for a block'))));
  });
}

/** A counter's value in a Prometheus text rendering (0 when absent). */
function counter(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`p2p_${name}{`) || l.startsWith(`p2p_${name} `));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

/**
 * Issue #12 item 2(b): a peer that really sends corrupt pieces. The liar is our own engine seeding
 * random bytes under the real torrent with `verifyReads: false` (what test/drills/malicious-peer.mjs
 * runs as a process): it has the swarm token, so it passes the authenticated handshake. Peers meet
 * through an in-process tracker (TrackerServer), so nobody is a trusted direct peer.
 */
describe('SwarmClient against a peer sending corrupt pieces (real sockets, in process)', () => {
  let dir: string;
  let data: Buffer;
  let hex: string;
  let metainfo: Buffer;
  let seedPath: string;
  let liarPath: string;
  let http: Server;
  let tracker: TrackerServer;
  let announce: string;
  const clients: SwarmClient[] = [];

  const client = async (opts: Partial<SwarmClientOptions> & { uploadRate?: number } = {}) => {
    const { uploadRate = 0, ...rest } = opts;
    const c = new SwarmClient({
      port: 0,
      host: '127.0.0.1',
      trackers: [announce],
      swarmToken: TOKEN,
      throttle: new ThrottleService({ d: { unit: 'bytes/s', initial: 0 }, u: { unit: 'bytes/s', initial: uploadRate } }),
      limits: { download: 'd', upload: 'u' },
      maxSeeding: 10,
      seedTtlSeconds: 600,
      authTimeoutMs: 2000,
      reannounceSeconds: 1,
      ...rest,
    });
    clients.push(c);
    await c.ready();
    return c;
  };

  /** A liar: seeds random bytes under the real torrent, unchecked. */
  const liar = async () => {
    const metrics = new MetricsService('liar');
    const c = await client({ verifyReads: false, metrics: new SwarmMetrics(metrics) });
    await c.seed(metainfo, liarPath);
    return { client: c, uploaded: async () => counter(await metrics.render(), 'swarm_uploaded_bytes_total') };
  };

  const peersOnTracker = (n: number) => expect.poll(() => tracker.stats().peers, { timeout: 5000 }).toBeGreaterThanOrEqual(n);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-liar-'));
    data = randomBytes(SIZE);
    hex = createHash('sha256').update(data).digest('hex');
    await mkdir(join(dir, 'seed'));
    await mkdir(join(dir, 'liar'));
    seedPath = join(dir, 'seed', hex);
    liarPath = join(dir, 'liar', hex);
    await writeFile(seedPath, data);
    await writeFile(liarPath, randomBytes(SIZE));
    ({ metainfo } = await createBlobTorrent(seedPath, hex, SIZE, []));
    tracker = new TrackerServer({ intervalSeconds: 1, peersCacheLength: 100, token: TOKEN });
    http = createServer((req, res) => tracker.handle('announce', req, res));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    announce = `http://127.0.0.1:${(http.address() as AddressInfo).port}/announce`;
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.destroy()));
  });
  afterAll(async () => {
    await tracker.close();
    await new Promise((r) => http.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  it('a liar alone is banned and none of its bytes count as received, so the stall rule sees no progress', async () => {
    const evil = await liar();
    await peersOnTracker(1);
    const metrics = new MetricsService('t');
    const leecher = await client({ metrics: new SwarmMetrics(metrics) });
    const out = join(dir, 'alone');
    await mkdir(out);
    const handle = await leecher.download(metainfo, { dir: out });
    await expect.poll(async () => counter(await metrics.render(), 'swarm_peers_banned_total'), { timeout: 10_000 }).toBe(1);
    const text = await metrics.render();
    expect(counter(text, 'swarm_piece_failures_total')).toBeGreaterThanOrEqual(2);
    expect(await evil.uploaded()).toBeGreaterThan(0);
    // Not "a few hundred bytes of handshakes and headers": exactly nothing. Any positive figure is
    // progress to a fill whose swarm stallMinRate is 1 B/s, and a liar reconnecting over and over
    // would keep a pull alive for ever on chatter alone.
    expect(handle.progress()).toMatchObject({ received: 0, bytes: 0 });
    expect(counter(text, 'blob_bytes_total')).toBe(0);
  }, 30_000);

  it('a liar that reconnects under a new id after each bad piece adds nothing to received: the stall rule still fires', async () => {
    const metrics = new MetricsService('t');
    const leecher = await client({ trackers: [], metrics: new SwarmMetrics(metrics) });
    const out = join(dir, 'reconnecting');
    await mkdir(out);
    const handle = await leecher.download(metainfo, { dir: out });
    const port = await leecher.ready();
    const failures = async () => counter(await metrics.render(), 'swarm_piece_failures_total');
    for (let round = 1; round <= 4; round++) {
      const liarConnection = await rawLiar(port, metainfo);
      await expect.poll(failures, { timeout: 5000 }).toBe(round);
      liarConnection.close();
      // Every byte it sent (handshakes, proof, bitfield, headers, the bad block) is no progress:
      // counting the chatter let such a liar keep a pull "alive" at the swarm's 1 B/s stall floor.
      expect(handle.progress().received).toBe(0);
    }
  }, 30_000);

  it('with a liar and an honest seed the pull completes byte-exact: the liar is banned, the honest seed is not, received counts only good bytes', async () => {
    // The honest seed is slow (2 MB/s), the liar unlimited: the leecher asks the liar for a lot.
    const honestMetrics = new MetricsService('honest');
    const honest = await client({ uploadRate: 2_000_000, metrics: new SwarmMetrics(honestMetrics) });
    await honest.seed(metainfo, seedPath);
    const evil = await liar();
    await peersOnTracker(2);
    const metrics = new MetricsService('t');
    const leecher = await client({ metrics: new SwarmMetrics(metrics) });
    const out = join(dir, 'mixed');
    await mkdir(out);
    const handle = await leecher.download(metainfo, { dir: out });
    const chunks: Buffer[] = [];
    for await (const chunk of handle.createReadStream(0)) chunks.push(chunk as Buffer);
    await handle.done;
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    const text = await metrics.render();
    expect(counter(text, 'swarm_piece_failures_total')).toBeGreaterThanOrEqual(1);
    // One ban: the liar's (had it been the honest seed, nothing could have completed the blob).
    expect(counter(text, 'swarm_peers_banned_total')).toBe(1);
    expect(await evil.uploaded()).toBeGreaterThan(0);
    expect(counter(await honestMetrics.render(), 'swarm_uploaded_bytes_total')).toBeGreaterThan(0);
    // Garbage is not progress: what the stall rule saw is exactly the blob.
    expect(handle.progress().received).toBe(SIZE);
  }, 30_000);

  it('pieces of several blocks: a piece the liar shared with the honest seed costs the honest seed nothing; the liar is banned, the pull completes', async () => {
    // 4 MiB pieces of 1 MiB blocks (blobs over 256 MiB get pieces like these), both seeds at
    // 4 MB/s: the leecher finishes started pieces with whichever peer is free, so many pieces mix
    // the liar's blocks with honest ones. Striking every sender of a failed piece banned the honest
    // seed too in 3 runs out of 4.
    const big = randomBytes(24 * 1024 * 1024 + 777);
    const name = createHash('sha256').update(big).digest('hex');
    const torrent = torrentWithPieceLength(big, name, 4 * 1024 * 1024);
    await mkdir(join(dir, 'big-seed'));
    await mkdir(join(dir, 'big-liar'));
    await writeFile(join(dir, 'big-seed', name), big);
    await writeFile(join(dir, 'big-liar', name), randomBytes(big.length));
    const honest = await client({ uploadRate: 4_000_000 });
    await honest.seed(torrent, join(dir, 'big-seed', name));
    const evil = await client({ verifyReads: false, uploadRate: 4_000_000 });
    await evil.seed(torrent, join(dir, 'big-liar', name));
    await peersOnTracker(2);
    const metrics = new MetricsService('t');
    const leecher = await client({ metrics: new SwarmMetrics(metrics) });
    const out = join(dir, 'big-out');
    await mkdir(out);
    const handle = await leecher.download(torrent, { dir: out });
    // Both banned (the old way) leaves no peer to finish the pull: fail fast rather than hang.
    const bothBanned = expect.poll(async () => counter(await metrics.render(), 'swarm_peers_banned_total'), { timeout: 60_000 }).toBe(2);
    await Promise.race([handle.done, bothBanned]);
    const text = await metrics.render();
    expect(counter(text, 'swarm_piece_failures_total')).toBeGreaterThanOrEqual(1);
    expect(counter(text, 'swarm_peers_banned_total')).toBe(1);
    expect(handle.progress().received).toBe(big.length);
    expect((await readFile(join(out, name))).equals(big)).toBe(true);
  }, 60_000);
});
