import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BenchCluster, metricSum } from '../../bench/cluster/bench-cluster.js';
import { tempDir } from '../support/app-process.js';
import type { Descriptor } from '../support/oci-image.js';

const MB = 1_000_000;
const LAYER = 16 * MB;
const LINK = 8 * MB;

// The bench's multi-host cluster at CI size, so the harness never rots: correctness, not speed.
describe(`${BenchCluster.name} (N=3, 16 MB layer, capped links)`, () => {
  let dir: string;
  let cluster: BenchCluster | undefined;
  let layer: Descriptor;

  beforeAll(async () => {
    dir = await tempDir('p2p-bench-smoke-');
    cluster = await BenchCluster.start({ dir, agents: 3, proxies: 1, linkBytesPerSec: LINK });
    layer = await cluster.pushImage('bench/smoke', 'v1', LAYER);
  }, 120_000);

  afterAll(async () => {
    await cluster?.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  it('pulls through every agent at once with the right digest; the layer leaves the origin once', async () => {
    const c = cluster!;
    c.markOrigin();
    const results = await c.pullAll([1, 2, 3], { repo: 'bench/smoke', tag: 'v1', layer }, 'agent');
    for (const r of results) {
      expect(r.error).toBeUndefined();
      expect(r.ok).toBe(true);
      expect(r.digestOk).toBe(true);
    }
    const origin = c.originBlobBytes(layer.digest);
    expect(origin.gets).toBe(1);
    expect(origin.bytes).toBe(layer.size);
    // Every agent got the whole layer from the swarm (peers + proxy); only the small config blob
    // (below p2pMinSize) came from the origin.
    for (const i of [1, 2, 3]) {
      const m = c.metrics(`agent${i}`);
      expect(metricSum(m, 'p2p_blob_bytes_fetched_total', 'fetcher="swarm"')).toBe(layer.size);
      expect(metricSum(m, 'p2p_blob_bytes_fetched_total', 'fetcher="origin"')).toBeLessThan(4096);
      // Over BitTorrent (peers, proxy) or relayed from the proxy before its torrent existed; a piece
      // the relay had partly delivered is fetched whole again, so up to one piece may count twice.
      const swarmed = ['peer', 'proxy', 'relay'].reduce((n, s) => n + metricSum(m, 'p2p_blob_bytes_received_total', `source="${s}"`), 0);
      expect(swarmed).toBeGreaterThanOrEqual(layer.size);
      expect(swarmed).toBeLessThanOrEqual(layer.size + 16 * 1024 * 1024);
    }
  }, 120_000);

  it('caps links with tc: a direct pull through the origin link moves the layer at most at the cap', async () => {
    const c = cluster!;
    c.markOrigin();
    const [r] = await c.pullAll([1], { repo: 'bench/smoke', tag: 'v1', layer }, 'origin');
    expect(r.digestOk).toBe(true);
    expect(c.originBlobBytes(layer.digest).gets).toBe(1);
    // 16 MB through an 8 MB/s link cannot take less than ~2 s (tbf burst allowed for).
    expect(r.seconds).toBeGreaterThan((LAYER / LINK) * 0.8);
  }, 120_000);

  it('reports peak RSS and CPU for every process it started', async () => {
    const stats = await cluster!.processStats();
    expect(stats.map((s) => s.name)).toEqual(expect.arrayContaining(['origin', 'tracker', 'proxy1', 'agent1', 'agent2', 'agent3']));
    for (const s of stats.filter((x) => x.name !== 'origin')) expect(s.peakRssBytes).toBeGreaterThan(20 * MB);
  });
});
