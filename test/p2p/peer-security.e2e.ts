import { randomBytes } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import bencode from 'bencode';
import { afterEach, describe, expect, it } from 'vitest';
import { MetricsService, ThrottleService } from '../../libs/ops/src/index.js';
import { encodeExtended, encodeHandshake, encodeRequest, INTERESTED, WireParser } from '../../libs/swarm/src/engine/wire-codec.js';
import { parseBlobMetainfo, SwarmClient, SwarmMetrics } from '../../libs/swarm/src/index.js';
import { fileDigest, skopeoPull } from '../support/oci-image.js';
import { CREDS, metrics, pushLayer, sample, startLoopbackCluster, SWARM, type LoopbackCluster } from './cluster.js';

const MB = 1_000_000;

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** The blob's torrent and the proxy's BitTorrent port, as a cluster member gets them (token + credentials). */
async function torrentOf(cluster: LoopbackCluster, repo: string, digest: string): Promise<{ metainfo: Buffer; proxyPort: number }> {
  const res = await fetch(`${cluster.proxies[0].url}/v1/blobs/${digest}/torrent?repo=${repo}&ns=${cluster.origin.host}`, {
    headers: { 'x-p2p-swarm-token': SWARM, authorization: `Basic ${Buffer.from(CREDS).toString('base64')}` },
  });
  expect(res.status).toBe(200);
  return { metainfo: Buffer.from(await res.arrayBuffer()), proxyPort: Number(res.headers.get('x-p2p-peer-port')) };
}

/**
 * A bare BitTorrent client that knows the info hash but not the swarm token: it handshakes, answers
 * the challenge with a made-up proof, says interested and asks for piece 0. Resolves with the piece
 * bytes it got and the message types it saw once the other side closes (or after 5 s).
 */
function outsider(port: number, infoHash: Buffer): Promise<{ pieceBytes: number; messages: string[]; closed: boolean }> {
  return new Promise((resolve) => {
    const out = { pieceBytes: 0, messages: [] as string[], closed: false };
    const socket = connect(port, '127.0.0.1');
    const reserved = Buffer.alloc(8);
    reserved[5] |= 0x10;
    const parser = new WireParser({
      handshake: () => undefined,
      message: (m) => {
        out.messages.push(m.type);
        if (m.type === 'extended' && m.id === 0) {
          const id = (bencode.decode(m.payload) as { m?: Record<string, number> }).m?.['p2p_auth'] ?? 1;
          socket.write(encodeExtended(id, randomBytes(32)));
          socket.write(INTERESTED);
          socket.write(encodeRequest(0, 0, 16384));
        }
      },
      pieceStart: (_i, _b, length) => {
        out.pieceBytes += length;
        return undefined;
      },
      pieceEnd: () => undefined,
    });
    socket.on('connect', () => {
      socket.write(encodeHandshake(infoHash, randomBytes(20), reserved));
      socket.write(encodeExtended(0, bencode.encode({ m: { p2p_auth: 1 }, p2p_nonce: randomBytes(16) })));
    });
    socket.on('data', (c: Buffer) => parser.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      out.closed = true;
      resolve(out);
    });
    setTimeout(() => socket.destroy(), 5000).unref();
  });
}

describe('BitTorrent ports serve only cluster members (real processes, loopback)', () => {
  let cluster: LoopbackCluster | undefined;
  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
  });

  it('an outsider that knows the info hash but not the token gets 0 piece bytes from an agent and from a proxy', async () => {
    const agentP2p = await freePort();
    cluster = await startLoopbackCluster({ proxies: 1, agents: 1, agentConfig: { p2pPort: agentP2p } });
    const layer = await pushLayer(cluster, 'sec/outsider', 12 * MB);
    const out = join(cluster.dir, 'out-outsider');
    const pulled = await skopeoPull(`127.0.0.1:${cluster.agents[0].port}/sec/outsider:v1`, out, { creds: CREDS });
    expect(pulled.ok, pulled.stderr).toBe(true);
    // Both now seed the blob: the proxy (original seed) and the agent (from its cache).
    const { metainfo, proxyPort } = await torrentOf(cluster, 'sec/outsider', layer.digest);
    const { infoHashBuf, infoHash } = parseBlobMetainfo(metainfo);
    for (const port of [proxyPort, agentP2p]) {
      const r = await outsider(port, infoHashBuf);
      expect(r.closed).toBe(true);
      expect(r.pieceBytes).toBe(0);
      // Nothing but the extended handshake (the challenge) came back: no bitfield, no have.
      expect(r.messages.filter((t) => t !== 'extended')).toEqual([]);
    }
    // A full client with the wrong token, given both as direct peers, gets nothing either.
    const dir = join(cluster.dir, 'wrong-token');
    await mkdir(dir);
    const wrong = new SwarmClient({
      port: 0,
      trackers: [`${cluster.tracker.url}/announce`],
      swarmToken: 'not-the-swarm-token',
      throttle: new ThrottleService({}),
      limits: {},
      maxSeeding: 1,
      seedTtlSeconds: 60,
      metrics: new SwarmMetrics(new MetricsService('outsider')),
    });
    try {
      const handle = await wrong.download(metainfo, { dir, peers: [`127.0.0.1:${proxyPort}`, `127.0.0.1:${agentP2p}`] });
      await new Promise((r) => setTimeout(r, 3000));
      expect(handle.progress().received).toBe(0);
    } finally {
      await wrong.destroy();
    }
    // No info hash on the open metrics of either app.
    expect(await metrics(cluster.agents[0])).not.toContain(infoHash);
    expect(await metrics(cluster.proxies[0])).not.toContain(infoHash);
  });

  it('a corrupted byte in the proxy’s cached file: never uploaded, evicted, and a fresh agent still gets the right digest', async () => {
    cluster = await startLoopbackCluster({ proxies: 1, agents: 1 });
    const layer = await pushLayer(cluster, 'sec/corrupt', 20 * MB);
    await torrentOf(cluster, 'sec/corrupt', layer.digest);
    expect(cluster.origin.blobGets(layer.digest)).toBe(1);
    // Flip one byte in piece 0 of the proxy's verified cache file (a disk fault, a bad actor with host access).
    const file = join(cluster.dir, 'proxy1', 'blobs', 'sha256', layer.digest.slice(7));
    const fh = await open(file, 'r+');
    const one = Buffer.alloc(1);
    await fh.read(one, 0, 1, 1000);
    one[0] ^= 0xff;
    await fh.write(one, 0, 1, 1000);
    await fh.close();

    const out = join(cluster.dir, 'out-corrupt');
    const res = await skopeoPull(`127.0.0.1:${cluster.agents[0].port}/sec/corrupt:v1`, out, { creds: CREDS });
    expect(res.ok, res.stderr).toBe(true);
    expect(await fileDigest(join(out, layer.digest.slice(7)))).toBe(layer.digest);
    const proxyText = await metrics(cluster.proxies[0]);
    // Found once: by the cache when the proxy opens the file for the agent's torrent request (its
    // identity changed since it was verified), or by the seeder checking a piece it reads.
    expect(sample(proxyText, 'p2p_swarm_corrupt_files_total') + sample(proxyText, 'p2p_cache_corrupt_total')).toBe(1);
    // No corrupt piece ever reached the agent.
    expect(sample(await metrics(cluster.agents[0]), 'p2p_swarm_piece_failures_total')).toBe(0);
    // The proxy dropped the file and fetched the blob again (the next pull is served from a good copy).
    expect(cluster.origin.blobGets(layer.digest)).toBe(2);
  });
});
