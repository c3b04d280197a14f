import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppProcess } from '../support/app-process.js';
import { fileDigest, OciLayout, pushImage, skopeoPull, type BuiltImage } from '../support/oci-image.js';
import { admin, CREDS, metrics, sample, startLoopbackCluster, SWARM, type LoopbackCluster } from './cluster.js';

const MB = 1_000_000;

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  const res = await request(url, { headers });
  return { status: res.statusCode, text: await res.body.text() };
}

describe('P2P path: origin + tracker + 2 proxies + 3 agents (real processes, loopback)', () => {
  let cluster: LoopbackCluster;
  let image: BuiltImage;

  beforeAll(async () => {
    cluster = await startLoopbackCluster({ proxies: 2, agents: 3 });
    const layout = new OciLayout(join(cluster.dir, 'layout'));
    // ≥ 200 MB in all: two big layers for the swarm, one tiny one below p2pMinSize (origin path).
    image = await layout.addImage('v1', [120 * MB, 90 * MB, 2_000]);
    await pushImage(layout.dir, 'v1', { host: cluster.origin.host, repo: 'team/big', creds: CREDS });
  }, 180_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('pulls the same image through every agent at once: right digests, each big layer leaves the origin once', async () => {
    // Slow the proxies' uploads so agents must trade pieces with each other, not only with the proxy.
    for (const p of cluster.proxies) expect((await admin(p, 'PATCH', '/admin/rate', { uploadRate: '20MB' })).status).toBe(200);
    const results = await Promise.all(
      cluster.agents.map((a, i) => skopeoPull(`127.0.0.1:${a.port}/team/big:v1`, join(cluster.dir, `out${i}`), { creds: CREDS })),
    );
    for (const r of results) expect(r.ok, r.stderr).toBe(true);
    for (let i = 0; i < cluster.agents.length; i++) {
      for (const layer of image.layers) {
        expect(await fileDigest(join(cluster.dir, `out${i}`, layer.digest.slice(7)))).toBe(layer.digest);
      }
    }
    const [big1, big2, tiny] = image.layers;
    expect(cluster.origin.blobGets(big1.digest)).toBe(1);
    expect(cluster.origin.blobGets(big2.digest)).toBe(1);
    // Below p2pMinSize every agent goes to the origin itself.
    expect(cluster.origin.blobGets(tiny.digest)).toBe(3);
  }, 300_000);

  it('shows where the bytes came from: the swarm served the big layers, agents traded with each other', async () => {
    let peerBytes = 0;
    let swarmBytes = 0;
    for (const a of cluster.agents) {
      const text = await metrics(a);
      peerBytes += sample(text, 'p2p_blob_bytes_received_total', 'source="peer"');
      swarmBytes += sample(text, 'p2p_blob_bytes_fetched_total', 'fetcher="swarm"');
    }
    const bigBytes = image.layers[0].size + image.layers[1].size;
    expect(swarmBytes).toBe(3 * bigBytes);
    expect(peerBytes).toBeGreaterThan(0);
  });

  it('lists seeded torrents on /admin/torrents of agents and proxies', async () => {
    const seeding = async (p: AppProcess) =>
      ((await admin(p, 'GET', '/admin/torrents')).json as { torrents: { name: string; state: string }[] }).torrents;
    for (const a of cluster.agents) {
      const names = (await seeding(a)).filter((t) => t.state === 'seeding').map((t) => t.name);
      expect(names.sort()).toEqual([image.layers[0].digest.slice(7), image.layers[1].digest.slice(7)].sort());
    }
    const proxyNames = (await Promise.all(cluster.proxies.map(seeding))).flat().map((t) => t.name);
    expect(new Set(proxyNames).size).toBe(2);
    expect((await get(`${cluster.agents[0].url}/admin/torrents`)).status).toBe(401);
  });

  it('refuses the torrent API without the swarm token, and with wrong registry credentials', async () => {
    const proxy = cluster.proxies[0].url;
    const digest = image.layers[0].digest;
    expect((await get(`${proxy}/v1/blobs/${digest}/torrent?repo=team/big`)).status).toBe(401);
    const token = { 'x-p2p-swarm-token': SWARM };
    const wrongCreds = await get(`${proxy}/v1/blobs/${digest}/torrent?repo=team/big`, {
      ...token,
      authorization: `Basic ${Buffer.from('puller:wrong').toString('base64')}`,
    });
    expect(wrongCreds.status).toBe(401);
    expect((await get(`${proxy}/v1/blobs/sha256:xyz/torrent?repo=team/big`, token)).status).toBe(400);
  });
});
