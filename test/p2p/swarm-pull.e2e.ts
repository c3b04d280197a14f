import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, tempDir, type AppProcess } from '../support/app-process.js';
import { fileDigest, OciLayout, pushImage, skopeoPull, type BuiltImage } from '../support/oci-image.js';
import { startOriginRegistry, type OriginRegistry } from '../support/origin-registry.js';

const MB = 1_000_000;
const USER = { username: 'puller', password: 'p2p-secret' };
const CREDS = `${USER.username}:${USER.password}`;
const ADMIN = 'p2p-admin-token';

/** Sum of a Prometheus counter's samples whose labels include `labels`. */
function sample(text: string, name: string, labels: string): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) && l.includes(labels))
    .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
}

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  const res = await request(url, { headers });
  return { status: res.statusCode, text: await res.body.text() };
}

describe('P2P path: origin + tracker + 2 proxies + 3 agents (real processes, loopback)', () => {
  let dir: string;
  let origin: OriginRegistry;
  let image: BuiltImage;
  const procs: AppProcess[] = [];
  let tracker: AppProcess;
  let proxies: AppProcess[];
  let agents: AppProcess[];

  beforeAll(async () => {
    dir = await tempDir('p2p-swarm-');
    await writeFile(join(dir, 'swarm-token'), 'swarm-secret-for-tests\n');
    await writeFile(join(dir, 'admin-token'), `${ADMIN}\n`);
    origin = await startOriginRegistry({ auth: USER });
    const layout = new OciLayout(join(dir, 'layout'));
    // ≥ 200 MB in all: two big layers for the swarm, one tiny one below p2pMinSize (origin path).
    image = await layout.addImage('v1', [120 * MB, 90 * MB, 2_000]);
    await pushImage(layout.dir, 'v1', { host: origin.host, repo: 'team/big', creds: CREDS });

    const common = { swarmTokenFile: join(dir, 'swarm-token'), adminTokenFile: join(dir, 'admin-token'), p2pPort: 0, minFreeSpace: '10MB' };
    tracker = await startApp('tracker', { swarmTokenFile: common.swarmTokenFile, adminTokenFile: common.adminTokenFile, announceRate: 0 });
    procs.push(tracker);
    const trackers = [`${tracker.url}/announce`];
    proxies = [];
    for (const n of [1, 2]) {
      const p = await startApp('proxy', { ...common, registry: origin.url, dataDir: join(dir, `proxy${n}`), trackers });
      proxies.push(p);
      procs.push(p);
    }
    agents = [];
    for (const n of [1, 2, 3]) {
      const a = await startApp('agent', {
        ...common,
        registry: origin.url,
        dataDir: join(dir, `agent${n}`),
        trackers,
        proxies: proxies.map((p) => p.url),
        p2pMinSize: '1MB',
      });
      agents.push(a);
      procs.push(a);
    }
  }, 180_000);

  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await origin?.stop();
  });

  it('pulls the same image through every agent at once: right digests, each big layer leaves the origin once', async () => {
    // Slow the proxies' uploads so agents must trade pieces with each other, not only with the proxy.
    for (const p of proxies) {
      const res = await request(`${p.url}/admin/rate`, {
        method: 'PATCH',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ uploadRate: '20MB' }),
      });
      expect(res.statusCode).toBe(200);
      await res.body.dump();
    }
    const results = await Promise.all(
      agents.map((a, i) => skopeoPull(`127.0.0.1:${a.port}/team/big:v1`, join(dir, `out${i}`), { creds: CREDS })),
    );
    for (const r of results) expect(r.ok, r.stderr).toBe(true);
    for (let i = 0; i < agents.length; i++) {
      for (const layer of image.layers) {
        expect(await fileDigest(join(dir, `out${i}`, layer.digest.slice(7)))).toBe(layer.digest);
      }
    }
    const [big1, big2, tiny] = image.layers;
    expect(origin.blobGets(big1.digest)).toBe(1);
    expect(origin.blobGets(big2.digest)).toBe(1);
    // Below p2pMinSize every agent goes to the origin itself.
    expect(origin.blobGets(tiny.digest)).toBe(3);
  }, 300_000);

  it('shows where the bytes came from: the swarm served the big layers, agents traded with each other', async () => {
    let peerBytes = 0;
    let swarmBytes = 0;
    for (const a of agents) {
      const metrics = (await get(`${a.url}/metrics`)).text;
      peerBytes += sample(metrics, 'p2p_blob_bytes_total', 'source="peer"');
      swarmBytes += sample(metrics, 'p2p_blob_bytes_fetched_total', 'source="swarm"');
    }
    const bigBytes = image.layers[0].size + image.layers[1].size;
    expect(swarmBytes).toBe(3 * bigBytes);
    expect(peerBytes).toBeGreaterThan(0);
  });

  it('lists seeded torrents on /admin/torrents of agents and proxies', async () => {
    const auth = { authorization: `Bearer ${ADMIN}` };
    const seeding = async (p: AppProcess) =>
      (JSON.parse((await get(`${p.url}/admin/torrents`, auth)).text) as { torrents: { name: string; state: string }[] }).torrents;
    for (const a of agents) {
      const names = (await seeding(a)).filter((t) => t.state === 'seeding').map((t) => t.name);
      expect(names.sort()).toEqual([image.layers[0].digest.slice(7), image.layers[1].digest.slice(7)].sort());
    }
    const proxyNames = (await Promise.all(proxies.map(seeding))).flat().map((t) => t.name);
    expect(new Set(proxyNames).size).toBe(2);
    expect((await get(`${agents[0].url}/admin/torrents`)).status).toBe(401);
  });

  it('refuses the torrent API without the swarm token, and with wrong registry credentials', async () => {
    const digest = image.layers[0].digest;
    const noToken = await get(`${proxies[0].url}/v1/blobs/${digest}/torrent?repo=team/big`);
    expect(noToken.status).toBe(401);
    const token = { 'x-p2p-swarm-token': 'swarm-secret-for-tests' };
    const wrongCreds = await get(`${proxies[0].url}/v1/blobs/${digest}/torrent?repo=team/big`, {
      ...token,
      authorization: `Basic ${Buffer.from('puller:wrong').toString('base64')}`,
    });
    expect(wrongCreds.status).toBe(401);
    const badDigest = await get(`${proxies[0].url}/v1/blobs/sha256:xyz/torrent?repo=team/big`, token);
    expect(badDigest.status).toBe(400);
  });
});
