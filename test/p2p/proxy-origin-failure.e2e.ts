import { join } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { rendezvousOrder } from '#swarm';
import { startCuttingTcpProxy, type CuttingTcpProxy } from '../support/cutting-tcp-proxy.js';
import { fileDigest, skopeoPull } from '../support/oci-image.js';
import { CREDS, metrics, pushLayer, sample, startLoopbackCluster, SWARM, type LoopbackCluster } from './cluster.js';
import { ociErrorCode } from '../support/oci-error-body.js';

const MB = 1_000_000;
/** Long on purpose: a fallback that waited for the stall rule would take at least this long. */
const STALL_SECONDS = 30;
const AUTH = `Basic ${Buffer.from(CREDS).toString('base64')}`;

async function proxyGet(url: string): Promise<{ status: number; type: string; body: string }> {
  const res = await request(url, { headers: { 'x-p2p-swarm-token': SWARM, authorization: AUTH } });
  let body: string;
  try {
    body = await res.body.text();
  } catch (err) {
    body = `<body cut: ${(err as Error).message}>`;
  }
  return { status: res.statusCode, type: String(res.headers['content-type'] ?? ''), body };
}

/** Sum of the agent's blob bytes that came through the swarm or a proxy (peer, proxy, relay). */
function p2pBytes(text: string): number {
  return ['peer', 'proxy', 'relay'].reduce((n, s) => n + sample(text, 'p2p_blob_bytes_received_total', `source="${s}"`), 0);
}

describe('issue #12 item 6: the origin drops while the proxy fills (real processes, a TCP cutter in front of the origin)', () => {
  let cluster: LoopbackCluster | undefined;
  let cutter: CuttingTcpProxy | undefined;
  afterEach(async () => {
    await cluster?.stop();
    await cutter?.stop();
    cluster = cutter = undefined;
  });

  it('the agent continues from the origin at once, the proxy answers typed errors, and stays in the ring for other blobs', async () => {
    let originPort = 0;
    cutter = await startCuttingTcpProxy(() => originPort);
    const cut = cutter;
    // Agents and proxies reach the origin through the cutter (same URL, so `?ns=` matches); the
    // proxies fetch at 4 MB/s so the agent is relaying the proxy's fill when the cut comes.
    cluster = await startLoopbackCluster({
      proxies: 2,
      agents: 1,
      proxyConfig: { registry: cut.url, originRate: '4MB' },
      agentConfig: { registry: cut.url, stallTimeout: `${STALL_SECONDS}s` },
    });
    originPort = cluster.origin.port;
    const c = cluster;
    const agent = c.agents[0];
    const proxyUrls = c.proxies.map((p) => p.url);

    // 1. Every origin fetch of a 16 MB layer by the owning proxy is cut 3 MB in (its relay to the
    // agent dies with it, and asking it again cannot help); the agent's own fetch by Range passes.
    const one = await pushLayer(c, 'drop/one', 16 * MB);
    const owner = rendezvousOrder(proxyUrls, one.digest)[0];
    cut.arm(one.digest, 3 * MB, 10);
    const out = join(c.dir, 'out-one');
    const pulled = await skopeoPull(`127.0.0.1:${agent.port}/drop/one:v1`, out, { creds: CREDS });
    const done = Date.now();
    expect(pulled.ok, pulled.stderr).toBe(true);
    expect(await fileDigest(join(out, one.digest.slice(7)))).toBe(one.digest);
    expect(cut.cuts.length).toBeGreaterThanOrEqual(1);
    const afterCut = done - cut.cuts[0];
    console.log(
      `item 6: origin cut under the proxy's fill; the agent's pull completed ${afterCut} ms later (stallTimeout ${STALL_SECONDS * 1000} ms)`,
    );
    // The relay's failure reaches the fill at once: no wait for the stall rule.
    expect(afterCut).toBeLessThan((STALL_SECONDS * 1000) / 2);
    // The rest came from the origin directly (the agent's own fetch, by Range).
    expect(sample(await metrics(agent), 'p2p_blob_bytes_fetched_total', 'fetcher="origin"')).toBeGreaterThan(5 * MB);
    expect(agent.output()).not.toMatch(/marked down/);

    // 2. The proxy's own answers when the origin drops under it: typed, never a 500.
    const three = await pushLayer(c, 'drop/three', 4 * MB);
    const proxy = c.proxies[0];
    cut.arm(three.digest, MB);
    const torrent = await proxyGet(`${proxy.url}/v1/blobs/${three.digest}/torrent?repo=drop/three`);
    expect([502, 503], `${torrent.status} ${torrent.body}`).toContain(torrent.status);
    expect(torrent.type).toMatch(/json/);
    expect(ociErrorCode(torrent.body)).toMatch(/UNAVAILABLE|UNKNOWN/);
    cut.arm(three.digest, 0, 5);
    const relay = await proxyGet(`${proxy.url}/v1/blobs/${three.digest}?repo=drop/three`);
    expect([502, 503], `${relay.status} ${relay.body}`).toContain(relay.status);
    expect(relay.type).toMatch(/json/);
    expect(ociErrorCode(relay.body)).toMatch(/UNAVAILABLE|UNKNOWN/);
    cut.arm('sha256:none', 0);
    expect(proxy.output()).not.toMatch(/unexpected error/);

    // 3. Another blob owned by the same proxy still goes through it (not marked down for one blob).
    let repo = 'drop/two0';
    let two = await pushLayer(c, repo, 4 * MB);
    for (let i = 1; rendezvousOrder(proxyUrls, two.digest)[0] !== owner && i < 20; i++) {
      repo = `drop/two${i}`;
      two = await pushLayer(c, repo, 4 * MB);
    }
    expect(rendezvousOrder(proxyUrls, two.digest)[0]).toBe(owner);
    const ownerProc = c.proxies[proxyUrls.indexOf(owner)];
    const originBytes = (t: string) => sample(t, 'p2p_blob_bytes_fetched_total', 'fetcher="origin"');
    const ownerBefore = originBytes(await metrics(ownerProc));
    const before = await metrics(agent);
    const second = await skopeoPull(`127.0.0.1:${agent.port}/${repo}:v1`, join(c.dir, 'out-two'), { creds: CREDS });
    expect(second.ok, second.stderr).toBe(true);
    const after = await metrics(agent);
    expect(p2pBytes(after) - p2pBytes(before)).toBeGreaterThanOrEqual(two.size);
    // Only the small config blob (below p2pMinSize) came from the origin directly.
    expect(originBytes(after) - originBytes(before)).toBeLessThan(64 * 1024);
    // The owner fetched it, once for the cluster: the agent did not skip it for the other proxy.
    expect(originBytes(await metrics(ownerProc)) - ownerBefore).toBe(two.size);
    expect(c.origin.blobGets(two.digest)).toBe(1);
    expect(agent.output()).not.toMatch(/marked down/);
  });
});
