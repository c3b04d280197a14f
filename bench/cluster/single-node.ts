import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { fileDigest, OciLayout, pushImage, type Descriptor } from '../../test/support/oci-image.js';
import { startOriginRegistry, type OriginRegistry } from '../../test/support/origin-registry.js';
import { procStats } from './bench-cluster.js';
import { startLocalApp, type LocalApp } from './local-app.js';

const exec = promisify(execFile);
const SWARM_TOKEN = 'bench-swarm-token';

export interface SingleNodeResult {
  layerBytes: number;
  /** skopeo through the agent, blob already at the proxy, agent cache empty. */
  agentSeconds: number;
  agentMBps: number;
  /** skopeo straight from the registry, same layer, same run (page cache warm, like the proxy's file). */
  directSeconds: number;
  directMBps: number;
  ratioToDirect: number;
  /** Time to the first body byte of a blob GET through an agent with nothing cached anywhere. */
  coldTtfbSeconds: number;
  /** Same, the blob already at the proxy (the agent's cache empty). */
  warmProxyTtfbSeconds: number;
  /** Same, straight from the registry. */
  directTtfbSeconds: number;
  agentPeakRssBytes: number;
  agentCpuSeconds: number;
  proxyCpuSeconds: number;
}

/**
 * One agent on unshaped loopback: swarm pull speed with the blob already at the proxy against
 * skopeo straight from the registry in the same run, and cold time to first byte.
 */
export async function runSingleNode(dir: string, layerBytes: number, log: (line: string) => void): Promise<SingleNodeResult> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'swarm-token'), SWARM_TOKEN);
  const procs: LocalApp[] = [];
  let origin: OriginRegistry | undefined;
  try {
    origin = await startOriginRegistry({ dir: join(dir, 'origin') });
    const layout = new OciLayout(join(dir, 'layout'));
    const images: Record<string, Descriptor> = {};
    for (const name of ['speed', 'cold', 'warm']) {
      images[name] = (await layout.addImage(name, [layerBytes])).layers[0];
      await pushImage(layout.dir, name, { host: origin.host, repo: `single/${name}` });
    }
    await rm(layout.dir, { recursive: true, force: true });
    const common = { swarmTokenFile: join(dir, 'swarm-token'), p2pPort: 0, minFreeSpace: '10MB' };
    const tracker = await startLocalApp('tracker', dir, { swarmTokenFile: common.swarmTokenFile, announceRate: 0 });
    procs.push(tracker);
    const trackers = [`${tracker.url}/announce`];
    const proxy = await startLocalApp('proxy', dir, { ...common, registry: origin.url, dataDir: join(dir, 'proxy'), trackers });
    procs.push(proxy);
    const agent = await startLocalApp('agent', dir, {
      ...common,
      registry: origin.url,
      dataDir: join(dir, 'agent'),
      trackers,
      proxies: [proxy.url],
      p2pMinSize: '1MB',
    });
    procs.push(agent);

    for (const name of ['speed', 'warm']) await warm(proxy.url, `single/${name}`, images[name].digest);
    log(`single node: proxy holds the layer (${layerBytes / 1e6} MB); pulling directly, then through the agent`);
    // First direct pull reads the registry's file into the page cache, as the proxy's file already is.
    await timedPull(`${origin.host}/single/speed:speed`, join(dir, 'out-direct0'), images.speed);
    const directSeconds = await timedPull(`${origin.host}/single/speed:speed`, join(dir, 'out-direct'), images.speed);
    const agentSeconds = await timedPull(`127.0.0.1:${agent.port}/single/speed:speed`, join(dir, 'out-agent'), images.speed);
    log(
      `single node: direct ${(layerBytes / 1e6 / directSeconds).toFixed(0)} MB/s, agent ${(layerBytes / 1e6 / agentSeconds).toFixed(0)} MB/s`,
    );

    const directTtfbSeconds = await ttfb(`${origin.url}/v2/single/cold/blobs/${images.cold.digest}`);
    const coldTtfbSeconds = await ttfb(`${agent.url}/v2/single/cold/blobs/${images.cold.digest}`);
    const warmProxyTtfbSeconds = await ttfb(`${agent.url}/v2/single/warm/blobs/${images.warm.digest}`);
    log(
      `single node: TTFB cold ${coldTtfbSeconds.toFixed(3)} s, proxy warm ${warmProxyTtfbSeconds.toFixed(3)} s, direct ${directTtfbSeconds.toFixed(3)} s`,
    );
    const a = await procStats(agent.proc.pid!);
    const p = await procStats(proxy.proc.pid!);
    return {
      layerBytes,
      agentSeconds,
      agentMBps: layerBytes / 1e6 / agentSeconds,
      directSeconds,
      directMBps: layerBytes / 1e6 / directSeconds,
      ratioToDirect: directSeconds / agentSeconds,
      coldTtfbSeconds,
      warmProxyTtfbSeconds,
      directTtfbSeconds,
      agentPeakRssBytes: a.peakRssBytes,
      agentCpuSeconds: a.cpuSeconds,
      proxyCpuSeconds: p.cpuSeconds,
    };
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    await origin?.stop();
  }
}

/** Asks the proxy for the blob's torrent: it fetches, verifies and seeds the blob first. */
async function warm(proxyUrl: string, repo: string, digest: string): Promise<void> {
  const res = await request(`${proxyUrl}/v1/blobs/${digest}/torrent?repo=${repo}`, {
    headers: { 'x-p2p-swarm-token': SWARM_TOKEN },
    headersTimeout: 600_000,
    bodyTimeout: 600_000,
  });
  await res.body.dump();
  if (res.statusCode !== 200) throw new Error(`warming the proxy: ${res.statusCode}`);
}

/** skopeo copy to a dir; the layer's sha256 is checked; returns seconds. */
async function timedPull(src: string, out: string, layer: Descriptor): Promise<number> {
  await rm(out, { recursive: true, force: true });
  const t0 = performance.now();
  await exec('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${src}`, `dir:${out}`], { timeout: 600_000 });
  const seconds = (performance.now() - t0) / 1000;
  const digest = await fileDigest(join(out, layer.digest.slice(7)));
  await rm(out, { recursive: true, force: true });
  if (digest !== layer.digest) throw new Error(`pull of ${src} gave a wrong layer digest`);
  return seconds;
}

/** Seconds until the first body byte of a GET (the rest is read and dropped). */
async function ttfb(url: string): Promise<number> {
  const t0 = performance.now();
  const res = await request(url, { headersTimeout: 600_000, bodyTimeout: 600_000 });
  if (res.statusCode !== 200) throw new Error(`GET ${url}: ${res.statusCode}`);
  let first = 0;
  for await (const chunk of res.body) {
    if (!first && (chunk as Buffer).length > 0) first = performance.now();
  }
  return (first - t0) / 1000;
}
