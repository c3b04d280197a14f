/**
 * Cached-blob throughput through the agent vs skopeo straight from docker-registry (same run,
 * loopback), and the agent's peak RSS while it fills and serves a large blob.
 *
 *   npm run bench:mirror                      # 1 GiB layer
 *   BENCH_BLOB_MB=256 npm run bench:mirror    # quicker
 *   BENCH_AGENT_NODE_OPTIONS=--max-semi-space-size=2 npm run bench:mirror   # agent with a small V8 young generation
 *
 * Needs docker-registry and skopeo (Debian packages; .ci/run installs them). Everything listens on 127.0.0.1.
 */
import { execFile } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from '../../test/support/app-process.js';
import { startLocalApp, type LocalApp } from '../cluster/local-app.js';
import { OciLayout, pushImage } from '../../test/support/oci-image.js';
import { startOriginRegistry, type OriginRegistry } from '../../test/support/origin-registry.js';

const exec = promisify(execFile);
const MB = 1e6;
const blobMiB = Number(process.env.BENCH_BLOB_MB ?? 1024);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);

/** The agent under test; BENCH_AGENT_NODE_OPTIONS tries V8 tuning on the agent only, e.g. --max-semi-space-size=2. */
function startAgent(dir: string, config: Record<string, unknown>): Promise<LocalApp> {
  return startLocalApp('agent', dir, config, {
    ...process.env,
    NODE_OPTIONS: process.env.BENCH_AGENT_NODE_OPTIONS ?? process.env.NODE_OPTIONS ?? '',
  });
}

async function rssNow(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
}

/** Samples a process's RSS (VmRSS) every 20 ms until stopped; returns the peak in bytes. */
function rssSampler(pid: number): { stop(): number } {
  let peak = 0;
  const sample = async () => {
    peak = Math.max(peak, await rssNow(pid));
  };
  const timer = setInterval(() => void sample(), 20);
  void sample();
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

async function skopeoCopy(src: string, out: string): Promise<void> {
  await rm(out, { recursive: true, force: true });
  await exec('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${src}`, `dir:${out}`], { maxBuffer: 1 << 24 });
}

async function curlBlob(url: string): Promise<void> {
  await exec('curl', ['-sf', '-o', '/dev/null', url]);
}

const mem = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB = ${(bytes / MB).toFixed(0)} MB`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const dir = await tempDir('p2p-bench-');
  let origin: OriginRegistry | undefined;
  let agent: LocalApp | undefined;
  try {
    const layout = new OciLayout(join(dir, 'layout'));
    process.stdout.write(`building a ${blobMiB} MiB layer…\n`);
    const image = await layout.addImage('bench', [blobMiB * 2 ** 20]);
    const layer = image.layers[0];
    origin = await startOriginRegistry({ dir: join(dir, 'origin') });
    await pushImage(layout.dir, 'bench', { host: origin.host, repo: 'bench/big' });
    // Cold: a fresh agent (empty cache) fills from the origin while streaming to skopeo; each
    // round alternates with a direct skopeo pull so both see the same machine load.
    const coldTimes: number[] = [];
    const coldDirect: number[] = [];
    let coldPeak = 0;
    for (let i = 0; i < rounds; i++) {
      await agent?.stop();
      await rm(join(dir, 'agent-data'), { recursive: true, force: true });
      agent = await startAgent(dir, { registry: origin.url, dataDir: join(dir, 'agent-data') });
      coldDirect.push(await timed(() => skopeoCopy(`${origin!.host}/bench/big:bench`, join(dir, 'out-direct'))));
      const coldRss = rssSampler(agent.proc.pid!);
      coldTimes.push(await timed(() => skopeoCopy(`127.0.0.1:${agent!.port}/bench/big:bench`, join(dir, 'out-cold'))));
      coldPeak = Math.max(coldPeak, coldRss.stop());
    }
    const cold = median(coldTimes);
    let agentHost = `127.0.0.1:${agent!.port}`;

    // A fresh agent on the same data dir (the cache survives restarts) so the cached-serving peak
    // is not inflated by the fill above.
    await agent!.stop();
    const idleAgent = await startAgent(dir, { registry: origin.url, dataDir: join(dir, 'agent-data') });
    agent = idleAgent;
    agentHost = `127.0.0.1:${agent.port}`;
    const idlePeak = await rssNow(agent.proc.pid!);

    const direct: number[] = [];
    const viaAgent: number[] = [];
    const curlDirect: number[] = [];
    const curlAgent: number[] = [];
    const warmRss = rssSampler(agent.proc.pid!);
    for (let i = 0; i < rounds; i++) {
      direct.push(await timed(() => skopeoCopy(`${origin!.host}/bench/big:bench`, join(dir, 'out-direct'))));
      viaAgent.push(await timed(() => skopeoCopy(`${agentHost}/bench/big:bench`, join(dir, 'out-agent'))));
      curlDirect.push(await timed(() => curlBlob(`${origin!.url}/v2/bench/big/blobs/${layer.digest}`)));
      curlAgent.push(await timed(() => curlBlob(`${agent!.url}/v2/bench/big/blobs/${layer.digest}`)));
    }
    const warmPeak = warmRss.stop();
    const originGets = origin.blobGets(layer.digest);

    const mbps = (s: number) => layer.size / MB / s;
    const row = (name: string, s: number) => `  ${name.padEnd(44)} ${mbps(s).toFixed(0).padStart(6)} MB/s  (${s.toFixed(2)} s)`;
    const ratio = mbps(median(viaAgent)) / mbps(median(direct));
    const lines = [
      `blob: ${layer.size} bytes (${(layer.size / MB).toFixed(0)} MB), ${rounds} rounds, medians; agent NODE_OPTIONS="${process.env.BENCH_AGENT_NODE_OPTIONS ?? ''}"`,
      row('skopeo direct from docker-registry', median(direct)),
      row('skopeo through the agent (cached blob)', median(viaAgent)),
      row('curl blob direct from docker-registry', median(curlDirect)),
      row('curl blob through the agent (cached blob)', median(curlAgent)),
      row('skopeo through the agent, cold (origin fill)', cold),
      `  ratio cold agent/direct (skopeo, time): ${(cold / median(coldDirect)).toFixed(2)}x  (cold rounds: ${coldTimes.map((t) => t.toFixed(2)).join(', ')} s; direct beside them: ${coldDirect.map((t) => t.toFixed(2)).join(', ')} s)`,
      `  ratio agent/direct (skopeo, cached): ${ratio.toFixed(2)}x  (goal >= 0.8x)`,
      `  ratio agent/direct (curl, cached):   ${(mbps(median(curlAgent)) / mbps(median(curlDirect))).toFixed(2)}x`,
      `  agent RSS idle after start:                           ${mem(idlePeak)}`,
      `  agent peak RSS while filling+serving the blob (cold): ${mem(coldPeak)}`,
      `  agent peak RSS while serving it from cache:           ${mem(warmPeak)}  (goal <= 150 MB)`,
      `  origin GETs of the blob (direct pulls + the agents' cold fills): ${originGets} (expected ${rounds * 4})`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await agent?.stop();
    await origin?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
