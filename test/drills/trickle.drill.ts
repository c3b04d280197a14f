import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DrillCluster, MB, metrics, pullBlob, sample } from './drill-cluster.js';

// A trickling peer is caught by the same stall detection as a silent one: no verified piece for
// stallTimeout while bytes arrive below stallMinRate (default 100 kB/s). A slow but steady swarm
// above that floor is left alone (many agents sharing one proxy at first must not stampede the origin).
describe('drill 7b: the only peer trickles at 50 kB/s, below stallMinRate', () => {
  let c: DrillCluster;

  beforeAll(async () => {
    c = await DrillCluster.start({ proxies: 1, agents: 1, layers: [20 * MB], proxy: { uploadRate: 50_000 } });
  }, 120_000);

  afterAll(async () => {
    await c?.stop();
  });

  it('the pull moves to the origin and finishes in well under the trickle time (100 s)', async () => {
    const layer = c.image.layers[0];
    const agent = c.agents[0];
    const started = Date.now();
    const result = await Promise.race([
      pullBlob(agent, layer.digest),
      new Promise<'hung'>((r) => setTimeout(() => r('hung'), 40_000).unref()),
    ]);
    const m = await metrics(agent);
    console.log(
      `drill 7b: ${result === 'hung' ? 'not done' : 'done'} after ${Date.now() - started} ms; swarm ${sample(m, 'p2p_blob_bytes_fetched_total', 'fetcher="swarm"')} B, origin ${sample(m, 'p2p_blob_bytes_fetched_total', 'fetcher="origin"')} B`,
    );
    expect(result).toEqual({ status: 200, digest: layer.digest, bytes: layer.size });
    expect(sample(m, 'p2p_blob_bytes_fetched_total', 'fetcher="origin"')).toBeGreaterThan(0);
  }, 120_000);
});
