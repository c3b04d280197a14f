import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fileDigest, skopeoPull } from '../support/oci-image.js';
import { admin, CREDS, metrics, pushLayer, sample, startLoopbackCluster, until, type LoopbackCluster } from './cluster.js';

const MB = 1_000_000;

describe('cold blob: relay from the proxy while it fetches, then the swarm (real processes, loopback)', () => {
  let cluster: LoopbackCluster | undefined;
  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
  });

  it('streams bytes to the client before the proxy has the whole blob, joins the swarm at its offset, origin once', async () => {
    // The proxy fetches at 8 MB/s (≈5 s for 40 MB); the agent takes at most 4 MB/s, so when the
    // torrent exists it holds about half the blob and must get the rest over BitTorrent.
    cluster = await startLoopbackCluster({
      proxies: 1,
      agents: 1,
      proxyConfig: { originRate: '8MB' },
      agentConfig: { downloadRate: '4MB' },
    });
    const c = cluster;
    const layer = await pushLayer(c, 'relay/cold', 40 * MB);
    const out = join(c.dir, 'out-relay');
    const pull = skopeoPull(`127.0.0.1:${c.agents[0].port}/relay/cold:v1`, out, { creds: CREDS });

    const relayed = async () => sample(await metrics(c.agents[0]), 'p2p_blob_bytes_received_total', 'source="relay"');
    expect(await until(async () => (await relayed()) > 0, 30_000)).toBe(true);
    // First bytes arrived while the proxy was still fetching: it has no torrent for the blob yet.
    const { json } = await admin(c.proxies[0], 'GET', '/admin/torrents');
    expect((json as { torrents: { name: string }[] }).torrents.map((t) => t.name)).not.toContain(layer.digest.slice(7));
    // Once the torrent exists the agent's download writes straight into the cache fill's temp file
    // (`tmp/<random>.part/<hex>`), from the piece boundary the relay went on to.
    let path = '';
    const joined = await until(async () => {
      const agent = await admin(c.agents[0], 'GET', '/admin/torrents');
      path =
        (agent.json as { torrents: { name: string; path: string }[] }).torrents.find((t) => t.name === layer.digest.slice(7))?.path ?? '';
      return path !== '';
    }, 30_000);
    expect(joined).toBe(true);
    expect(path).toMatch(new RegExp(`/tmp/[0-9a-f]{12}\\.part/${layer.digest.slice(7)}$`));

    const res = await pull;
    expect(res.ok, res.stderr).toBe(true);
    expect(await fileDigest(join(out, layer.digest.slice(7)))).toBe(layer.digest);
    expect(c.origin.blobGets(layer.digest)).toBe(1);
    const text = await metrics(c.agents[0]);
    const relay = sample(text, 'p2p_blob_bytes_received_total', 'source="relay"');
    const proxy = sample(text, 'p2p_blob_bytes_received_total', 'source="proxy"');
    expect(relay).toBeGreaterThan(5 * MB);
    expect(proxy).toBeGreaterThan(5 * MB);
    // Pieces the relay already delivered are not fetched again over BitTorrent.
    expect(relay + proxy).toBeLessThan(layer.size + 8 * 1024 * 1024);
    // Only the tiny config blob (below p2pMinSize) came from the origin directly.
    expect(sample(text, 'p2p_blob_bytes_fetched_total', 'fetcher="origin"')).toBeLessThan(4096);
  });
});
