import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppProcess } from '../support/app-process.js';
import { AUTH, checkCache, DrillCluster, MB, metrics, openFiles, pullBlob, rssBytes, sample, torrents, waitFor } from './drill-cluster.js';

/** Swarm bytes agent `a` has fetched so far. */
async function swarmFetched(a: AppProcess): Promise<number> {
  return sample(await metrics(a), 'p2p_blob_bytes_fetched_total', 'fetcher="swarm"');
}

async function originFetched(a: AppProcess): Promise<number> {
  return sample(await metrics(a), 'p2p_blob_bytes_fetched_total', 'fetcher="origin"');
}

/** Waits until agent `a` has fetched `n` more swarm bytes than `base` (the pull is mid-way through the swarm). */
async function midSwarm(a: AppProcess, base: number, n: number): Promise<void> {
  await waitFor(async () => (await swarmFetched(a)) - base >= n, 30_000, `${n} swarm bytes on ${a.url}`);
}

/** Resolves with 'hung' after `ms` (a bound on a pull that may never end; the timer does not hold the process). */
function within(ms: number): Promise<'hung'> {
  return new Promise((res) => setTimeout(() => res('hung'), ms).unref());
}

describe('drills 1, 3, 7, 8: proxy killed, agent killed, stalled peer, client gone (loopback cluster)', () => {
  let c: DrillCluster;

  beforeAll(async () => {
    // Proxies upload at 5 MB/s so a 30 MB layer takes seconds: long enough to break things mid-pull.
    c = await DrillCluster.start({ proxies: 2, agents: 2, proxy: { uploadRate: '5MB' } });
  }, 120_000);

  afterAll(async () => {
    await c?.stop();
  });

  it('drill 8: a client that disconnects mid-stream leaves the shared download running, no fd or temp file leaked', async () => {
    const image = await c.addImage('d8', [30 * MB]);
    const layer = image.layers[0];
    const agent = c.agents[0];
    const pid = agent.proc.pid!;
    const rssBefore = await rssBytes(pid);
    const fdsBefore = (await openFiles(pid, '/')).length;
    // Client A reads 1 MB then hangs up; client B reads the same blob to the end.
    const a = await request(`${agent.url}/v2/drill/d8/blobs/${layer.digest}`, { headers: { authorization: AUTH } });
    const b = pullBlob(agent, layer.digest, 'drill/d8');
    let got = 0;
    for await (const chunk of a.body) {
      got += (chunk as Buffer).length;
      if (got >= MB) break;
    }
    a.body.destroy();
    const full = await b;
    expect(full).toEqual({ status: 200, digest: layer.digest, bytes: layer.size });
    // Ten more clients hang up at random points of the now cached blob.
    for (let i = 0; i < 10; i++) {
      const r = await request(`${agent.url}/v2/drill/d8/blobs/${layer.digest}`, { headers: { authorization: AUTH } });
      let n = 0;
      const stopAt = Math.floor(Math.random() * layer.size);
      for await (const chunk of r.body) {
        n += (chunk as Buffer).length;
        if (n >= stopAt) break;
      }
      r.body.destroy();
    }
    expect(await pullBlob(agent, layer.digest, 'drill/d8')).toEqual({ status: 200, digest: layer.digest, bytes: layer.size });
    const cache = await checkCache(c.agentDir(0));
    expect(cache.blobs).toContain(layer.digest.slice(7));
    await waitFor(async () => (await openFiles(pid, `${c.agentDir(0)}/tmp`)).length === 0, 10_000, 'temp files closed');
    await waitFor(async () => (await checkCache(c.agentDir(0))).tmpFiles.length === 0, 10_000, 'temp files removed');
    // Seeding keeps one fd per seeded file: allow that, not one per aborted client.
    const fdsAfter = (await openFiles(pid, '/')).length;
    expect(fdsAfter - fdsBefore).toBeLessThanOrEqual(4);
    const rssAfter = await rssBytes(pid);
    console.log(
      `drill 8: fds ${fdsBefore}→${fdsAfter}, RSS ${(rssBefore / MB).toFixed(0)}→${(rssAfter / MB).toFixed(0)} MB, 12 clients, ${cache.bytes} cache bytes checked`,
    );
    expect(rssAfter - rssBefore).toBeLessThan(100 * MB);
  });

  it('drill 7: every peer stalls (SIGSTOP) mid-pull → stall detected, origin resumes by Range, right digest', async () => {
    const image = await c.addImage('d7', [30 * MB]);
    const layer = image.layers[0];
    const agent = c.agents[1];
    const [swarm0, origin0] = [await swarmFetched(agent), await originFetched(agent)];
    const started = Date.now();
    const pull = pullBlob(agent, layer.digest, 'drill/d7');
    await midSwarm(agent, swarm0, 2 * MB);
    // Both proxies freeze with their TCP connections open: the worst kind of peer, silent.
    for (const p of c.proxies) p.proc.kill('SIGSTOP');
    let result: Awaited<typeof pull> | 'hung';
    try {
      result = await Promise.race([pull, within(40_000)]);
    } finally {
      for (const p of c.proxies) p.proc.kill('SIGCONT');
    }
    if (result === 'hung')
      console.log(
        agent
          .output()
          .split('\n')
          .filter((l) => /warn|error|stall|stopped/i.test(l))
          .slice(-20)
          .join('\n'),
      );
    expect(result).toEqual({ status: 200, digest: layer.digest, bytes: layer.size });
    const fromSwarm = (await swarmFetched(agent)) - swarm0;
    const fromOrigin = (await originFetched(agent)) - origin0;
    console.log(`drill 7: ${fromSwarm} B swarm + ${fromOrigin} B origin in ${Date.now() - started} ms`);
    expect(fromSwarm).toBeGreaterThan(0);
    expect(fromOrigin).toBeGreaterThan(0);
    expect(fromSwarm + fromOrigin).toBe(layer.size);
    expect((await checkCache(c.agentDir(1))).blobs).toContain(layer.digest.slice(7));
  });

  it('drill 3: an agent killed mid-pull restarts with no partial blob, pulls right, seeds only verified blobs', async () => {
    const image = await c.addImage('d3', [30 * MB]);
    const layer = image.layers[0];
    const agent = c.agents[1];
    const base = await swarmFetched(agent);
    const pull = pullBlob(agent, layer.digest, 'drill/d3');
    await midSwarm(agent, base, 3 * MB);
    agent.proc.kill('SIGKILL');
    await agent.exited;
    const killed = await pull;
    expect(killed.digest).not.toBe(layer.digest);
    // On disk right after the kill: the partial download is only under tmp/, never under blobs/.
    const crashed = await checkCache(c.agentDir(1));
    expect(crashed.blobs).not.toContain(layer.digest.slice(7));
    const restarted = await c.restartAgent(1);
    const after = await checkCache(c.agentDir(1));
    expect(after.tmpFiles).toEqual([]);
    expect(after.blobs).not.toContain(layer.digest.slice(7));
    expect(await pullBlob(restarted, layer.digest, 'drill/d3')).toEqual({ status: 200, digest: layer.digest, bytes: layer.size });
    const verified = (await checkCache(c.agentDir(1))).blobs;
    expect(verified).toContain(layer.digest.slice(7));
    await waitFor(
      async () => (await torrents(restarted)).some((t) => t.name === layer.digest.slice(7) && t.state === 'seeding'),
      10_000,
      'seeding',
    );
    for (const t of await torrents(restarted)) if (t.state === 'seeding') expect(verified).toContain(t.name);
    console.log(
      `drill 3: killed at ${killed.bytes} B streamed; after restart ${verified.length} verified blobs, ${after.tmpFiles.length} temp files`,
    );
  });

  it('drill 1: the owning proxy is killed mid-pull → both agents finish with the right digest', async () => {
    const image = await c.addImage('d1', [30 * MB]);
    const layer = image.layers[0];
    const base = await Promise.all(c.agents.map(swarmFetched));
    const pulls = c.agents.map((a) => pullBlob(a, layer.digest, 'drill/d1'));
    await midSwarm(c.agents[0], base[0], 2 * MB);
    // The first bytes may come relayed from the proxy's origin fetch, before any torrent exists:
    // the owner is the proxy that ends up seeding the blob (it has just fetched it).
    const owners: AppProcess[] = [];
    await waitFor(
      async () => {
        owners.length = 0;
        for (const p of c.proxies) if ((await torrents(p)).some((t) => t.name === layer.digest.slice(7))) owners.push(p);
        return owners.length > 0;
      },
      30_000,
      'a proxy seeding the layer',
    );
    expect(owners).toHaveLength(1);
    owners[0].proc.kill('SIGKILL');
    await owners[0].exited;
    const results = await Promise.all(pulls);
    for (const r of results) expect(r).toEqual({ status: 200, digest: layer.digest, bytes: layer.size });
    for (const i of [0, 1]) expect((await checkCache(c.agentDir(i))).blobs).toContain(layer.digest.slice(7));
    // The next blob this ring would give the dead proxy goes to the survivor or the origin: still right.
    const next = await c.addImage('d1b', [5 * MB]);
    expect(await pullBlob(c.agents[0], next.layers[0].digest, 'drill/d1b')).toEqual({
      status: 200,
      digest: next.layers[0].digest,
      bytes: next.layers[0].size,
    });
    console.log(`drill 1: 2 pulls + 1 after the kill, ${2 * layer.size + next.layers[0].size} B checked`);
  });
});
