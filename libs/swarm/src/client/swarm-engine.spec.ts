import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bencode from 'bencode';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MetricsService, ThrottleService } from '#ops';
import { encodeExtended, encodeHandshake, encodeRequest, INTERESTED, WireParser, type WireMessage } from '../engine/wire-codec.js';
import { createBlobTorrent, parseBlobMetainfo } from '../torrent/blob-torrent.js';
import { SwarmClient, type SwarmClientOptions } from './swarm-client.js';
import { SwarmMetrics } from './swarm.metrics.js';

const TOKEN = 'the-swarm-token';
const SIZE = 9 * 1024 * 1024 + 12_345; // ten 1 MiB pieces, the last one short

describe('SwarmClient engine (real sockets, in process)', () => {
  let dir: string;
  let data: Buffer;
  let hex: string;
  let seedPath: string;
  let metainfo: Buffer;
  const clients: SwarmClient[] = [];

  const client = async (opts: Partial<SwarmClientOptions> = {}) => {
    const c = new SwarmClient({
      port: 0,
      host: '127.0.0.1',
      trackers: [],
      swarmToken: TOKEN,
      throttle: new ThrottleService({ d: { unit: 'bytes/s', initial: 0 }, u: { unit: 'bytes/s', initial: 0 } }),
      limits: { download: 'd', upload: 'u' },
      maxSeeding: 10,
      seedTtlSeconds: 600,
      authTimeoutMs: 2000,
      ...opts,
    });
    clients.push(c);
    await c.ready();
    return c;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-engine-'));
    data = randomBytes(SIZE);
    hex = createHash('sha256').update(data).digest('hex');
    await mkdir(join(dir, 'seed'));
    seedPath = join(dir, 'seed', hex);
    await writeFile(seedPath, data);
    ({ metainfo } = await createBlobTorrent(seedPath, hex, SIZE, []));
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.destroy()));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('downloads from an authenticated seed, in order for the reader, byte-exact', async () => {
    const seeder = await client({ role: 'proxy' });
    await seeder.seed(metainfo, seedPath);
    const metrics = new MetricsService('t');
    const leecher = await client({ metrics: new SwarmMetrics(metrics) });
    const out = join(dir, 'a');
    await mkdir(out);
    const handle = await leecher.download(metainfo, { dir: out, peers: [`127.0.0.1:${await seeder.ready()}`] });
    const chunks: Buffer[] = [];
    for await (const chunk of handle.createReadStream(0)) chunks.push(chunk as Buffer);
    await handle.done;
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    expect(handle.progress().bytes).toBe(SIZE);
    expect(await metrics.render()).toMatch(new RegExp(`p2p_blob_bytes_received_total\\{source="proxy",app="t"\\} ${SIZE}`));
    // No info hash on the open metrics surface.
    expect(await metrics.render()).not.toContain(handle.infoHash);
  });

  it('a peer with the wrong token gets no piece', async () => {
    const seeder = await client();
    await seeder.seed(metainfo, seedPath);
    const outsider = await client({ swarmToken: 'not-the-token' });
    const out = join(dir, 'b');
    await mkdir(out);
    const handle = await outsider.download(metainfo, { dir: out, peers: [`127.0.0.1:${await seeder.ready()}`] });
    await new Promise((r) => setTimeout(r, 1500));
    expect(handle.progress().received).toBe(0);
    expect(seeder.list()[0].uploaded).toBe(0);
  });

  it('a raw client that knows the info hash but not the token gets no bitfield and no piece, and is dropped', async () => {
    const seeder = await client();
    await seeder.seed(metainfo, seedPath);
    const { infoHashBuf } = parseBlobMetainfo(metainfo);
    const port = await seeder.ready();
    // 1: skips authentication and asks for a piece straight away.
    const skip = await rawPeer(port, infoHashBuf, (s) => {
      s.write(INTERESTED);
      s.write(encodeRequest(0, 0, 16384));
    });
    // 2: answers the challenge with a made-up proof.
    const forge = await rawPeer(port, infoHashBuf, (s, remoteAuthId) => {
      if (remoteAuthId) s.write(encodeExtended(remoteAuthId, randomBytes(32)));
      s.write(encodeRequest(0, 0, 16384));
    });
    for (const r of [skip, forge]) {
      expect(r.closed).toBe(true);
      expect(r.messages.filter((m) => m !== 'extended')).toEqual([]);
      expect(r.pieceBytes).toBe(0);
    }
    expect(seeder.list()[0].uploaded).toBe(0);
  });

  it('adopts a piece fetched another way only when it matches its SHA-1, writes it and offers it', async () => {
    const leecher = await client();
    const out = join(dir, 'adopt');
    await mkdir(out);
    const handle = await leecher.download(metainfo, { dir: out });
    const pl = handle.pieceLength;
    const wrong = Buffer.from(data.subarray(pl, 2 * pl));
    wrong[7] ^= 1;
    expect(handle.adopt(1, wrong)).toBe(false);
    expect(handle.pieceAt(pl).have).toBe(false);
    expect(handle.adopt(1, data.subarray(pl, 2 * pl))).toBe(true);
    const watch = handle.watch(pl);
    try {
      while (watch.end(pl) === pl) await watch.wait(100);
      expect(watch.end(pl)).toBe(2 * pl);
    } finally {
      watch.close();
    }
    const fh = await open(join(out, hex), 'r');
    const back = Buffer.alloc(pl);
    await fh.read(back, 0, pl, pl);
    await fh.close();
    expect(back.equals(data.subarray(pl, 2 * pl))).toBe(true);
    // A peer that joins now is offered it: a second client downloads piece 1 from the adopter.
    const other = await client();
    const out2 = join(dir, 'adopt2');
    await mkdir(out2);
    const h2 = await other.download(metainfo, { dir: out2, peers: [`127.0.0.1:${await leecher.ready()}`] });
    const w2 = h2.watch(pl);
    try {
      const deadline = Date.now() + 5000;
      while (w2.end(pl) === pl && Date.now() < deadline) await w2.wait(100);
      expect(w2.end(pl)).toBe(2 * pl);
    } finally {
      w2.close();
    }
  });

  it('never uploads a piece that fails its SHA-1 on disk: stops seeding and reports the corrupt file', async () => {
    const bad = join(dir, 'bad');
    await mkdir(bad);
    const badPath = join(bad, hex);
    await writeFile(badPath, data);
    const fh = await open(badPath, 'r+');
    await fh.write(Buffer.from([data[1_500_000] ^ 0xff]), 0, 1, 1_500_000); // inside piece 1
    await fh.close();
    const corrupt: number[] = [];
    const stopped: string[] = [];
    const seeder = await client({ onCorruptFile: (e) => corrupt.push(e.piece), onStopSeeding: (e) => stopped.push(e.reason) });
    await seeder.seed(metainfo, badPath);
    const metrics = new MetricsService('t');
    const leecher = await client({ metrics: new SwarmMetrics(metrics) });
    const out = join(dir, 'c');
    await mkdir(out);
    await leecher.download(metainfo, { dir: out, peers: [`127.0.0.1:${await seeder.ready()}`] });
    await expect.poll(() => corrupt, { timeout: 5000 }).toEqual([1]);
    expect(stopped).toEqual(['corrupt']);
    expect(seeder.list()).toEqual([]);
    // The leecher never saw a bad piece: nothing failed verification on its side.
    expect(await metrics.render()).toMatch(/p2p_swarm_piece_failures_total\{app="t"\} 0/);
  });
});

interface RawResult {
  closed: boolean;
  messages: string[];
  pieceBytes: number;
}

/** A bare TCP client that speaks BEP 3/10 but cannot prove the token; `act` runs once the peer's extended handshake arrived. */
function rawPeer(port: number, infoHash: Buffer, act: (s: Socket, remoteAuthId: number | undefined) => void): Promise<RawResult> {
  return new Promise((resolve) => {
    const result: RawResult = { closed: false, messages: [], pieceBytes: 0 };
    const socket = connect(port, '127.0.0.1');
    const reserved = Buffer.alloc(8);
    reserved[5] |= 0x10;
    let acted = false;
    const parser = new WireParser({
      handshake: () => undefined,
      message: (m: WireMessage) => {
        result.messages.push(m.type);
        if (m.type === 'extended' && m.id === 0 && !acted) {
          acted = true;
          const dict = bencode.decode(m.payload) as { m?: Record<string, number> };
          act(socket, dict.m?.['p2p_auth']);
        }
      },
      pieceStart: (_i, _b, length) => {
        result.pieceBytes += length;
        return undefined;
      },
      pieceEnd: () => undefined,
    });
    socket.on('data', (chunk: Buffer) => parser.push(chunk));
    socket.on('connect', () => {
      socket.write(encodeHandshake(infoHash, randomBytes(20), reserved));
      socket.write(encodeExtended(0, bencode.encode({ m: { p2p_auth: 1 }, p2p_nonce: randomBytes(16) })));
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      result.closed = true;
      resolve(result);
    });
    setTimeout(() => socket.destroy(), 4000).unref();
  });
}
