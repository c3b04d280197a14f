import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DrillCluster, get, MB, metrics, pullBlob, sample, waitFor } from './drill-cluster.js';

describe('drill 2: every tracker down before and during a pull, then back', () => {
  let c: DrillCluster;

  beforeAll(async () => {
    // No tracker process: agents and the proxy announce to a port nobody listens on.
    c = await DrillCluster.start({ proxies: 1, agents: 2, tracker: false, layers: [20 * MB], proxy: { uploadRate: '4MB' } });
  }, 120_000);

  afterAll(async () => {
    await c?.stop();
  });

  it('the pull completes with the proxy as direct peer; once the tracker is back the peers find each other', async () => {
    const layer = c.image.layers[0];
    const [a0, a1] = c.agents;
    const first = await pullBlob(a0, layer.digest);
    expect(first).toEqual({ status: 200, digest: layer.digest, bytes: layer.size });
    expect(sample(await metrics(a0), 'p2p_blob_bytes_fetched_total', 'fetcher="swarm"')).toBe(layer.size);
    expect(c.origin.blobGets(layer.digest)).toBe(1);

    const tracker = await c.startTracker();
    // SwarmClient re-announces on its own after failed announces (webtorrent alone waits 30 min).
    await waitFor(async () => sample(await metrics(tracker), 'p2p_tracker_peers') >= 2, 60_000, 'proxy and agent re-announced');
    const peersBack = sample(await metrics(tracker), 'p2p_tracker_peers');

    // The second agent learns about the first from the tracker and takes bytes from it (the proxy is slow).
    const uploadedBefore = sample(await metrics(a0), 'p2p_swarm_uploaded_bytes_total');
    const second = await pullBlob(a1, layer.digest);
    expect(second).toEqual({ status: 200, digest: layer.digest, bytes: layer.size });
    const uploaded = sample(await metrics(a0), 'p2p_swarm_uploaded_bytes_total') - uploadedBefore;
    const announces = sample(await metrics(tracker), 'p2p_tracker_requests_total', 'result="ok"');
    console.log(
      `drill 2: pull without tracker ok; tracker back: ${peersBack} peers, ${announces} announces; agent 1 → agent 2: ${uploaded} B`,
    );
    expect(uploaded).toBeGreaterThan(0);
    expect(c.origin.blobGets(layer.digest)).toBe(1);
    expect((await get(`${a1.url}/healthz`)).status).toBe(200);
  }, 120_000);
});
