/**
 * `npm run bench -- --agents 20 --layer 256MB --link 10MB/s [--proxies 1]`
 *
 * Multi-host benchmark (needs root: network namespaces + tc). Writes bench-results/<timestamp>/
 * with result.json, summary.md, chart.svg and chart.png. Phases:
 *   cold    N agents pull a layer nobody holds (origin → proxy → swarm), through capped links
 *   warm    N agents pull a layer the proxy already seeds (the Kumar–Ross setting)
 *   direct  k agents' skopeo pull straight from the origin through the same links (k = --direct-agents,
 *           default min(N, 4)); N pulls are extrapolated as k-pull time × N/k when the origin link binds
 *   single  one agent on unshaped loopback: MB/s vs skopeo direct, cold TTFB
 *   tracker announce throughput, 100 swarms × 1000 peers
 * Env BENCH_APP_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") is given to the loopback apps only.
 * Options: --skip-cluster, --stall-timeout SECONDS (agents' stallTimeout), --proxy-upload-slots K (proxies' uploadSlots), --origin-link RATE, --direct-agents K, --out DIR, --single-layer SIZE,
 *   --skip-cold, --skip-warm, --skip-direct, --skip-single, --skip-tracker, --tracker-swarms S, --tracker-peers P.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { BenchCluster, machineCpu, selfAndChildrenCpu, metricSum, type ProcessStats, type PullResult } from './bench-cluster.js';
import { formatBytes, lowerBounds, parseBytes, quantile, type Bounds } from './bench-math.js';
import { renderCdfSvg, svgToPng, type CdfSeries, type Marker } from './cdf-chart.js';
import { runSingleNode, type SingleNodeResult } from './single-node.js';
import { runTrackerLoad, type TrackerLoadResult } from './tracker-load.js';
import { tempDir } from '../../test/support/app-process.js';
import { REPO_ROOT as ROOT } from './local-app.js';
import { renderSummary } from './bench-summary.js';

interface Args {
  agents: number;
  layerBytes: number;
  linkBytesPerSec: number;
  originBytesPerSec: number;
  proxies: number;
  directAgents: number;
  singleLayerBytes: number;
  out: string;
  cluster: boolean;
  cold: boolean;
  warm: boolean;
  direct: boolean;
  single: boolean;
  tracker: boolean;
  trackerSwarms: number;
  trackerPeers: number;
  /** Agent `stallTimeout` in seconds; undefined = the product default. */
  stallTimeout?: number;
  /** Proxy `uploadSlots` (peers unchoked at once); undefined = the product default. */
  proxyUploadSlots?: number;
}

interface AgentRow {
  agent: number;
  coldSeconds?: number;
  warmSeconds?: number;
  directSeconds?: number;
  /** Swarm bytes received from other agents / from the proxy, over the cold and warm phases. */
  peerBytes: number;
  proxyBytes: number;
  /** Bytes relayed over HTTP by the proxy while it was still fetching the blob (cold phase). */
  relayBytes: number;
  /** Bytes the agent itself fetched from the origin (configs below p2pMinSize, stall fallbacks). */
  originBytes: number;
  uploadedBytes: number;
  peakRssBytes: number;
  cpuSeconds: number;
}

interface PhaseResult {
  name: 'cold' | 'warm' | 'direct';
  agents: number;
  pulls: PullResult[];
  p50: number;
  p100: number;
  wallSeconds: number;
  /** Layer bytes the origin sent in this phase (access log) ÷ layer bytes. */
  originLayerRatio: number;
  /** Bytes on the origin host's wire in this phase (tc counter). */
  originWireBytes: number;
  /** Share of the machine's 2 cores busy during the phase, 0..1. */
  cpuBusy: number;
  /** CPU seconds spent by role during the phase. */
  cpuByRole: Record<string, number>;
}

export interface BenchResult {
  startedAt: string;
  machine: { cpus: number; cpuModel: string; memoryBytes: number; kernel: string; node: string };
  args: Args;
  bounds: Bounds;
  /** Seconds the owning proxy took to fetch, verify and seed the warm layer from the origin. */
  proxyFillSeconds?: number;
  phases: PhaseResult[];
  directExtrapolated?: { p100: number; p50: number; fromAgents: number };
  ratios: Record<string, number>;
  agents: AgentRow[];
  processes: ProcessStats[];
  single?: SingleNodeResult;
  tracker?: TrackerLoadResult;
  failures: string[];
}

function parseArgs(argv: string[]): Args {
  const get = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    if (i < 0) return undefined;
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`);
    return v;
  };
  const has = (name: string) => argv.includes(`--${name}`);
  const int = (name: string, def: number, min: number, max: number) => {
    const v = Number(get(name) ?? def);
    if (!Number.isInteger(v) || v < min || v > max) throw new Error(`--${name} must be an integer in ${min}..${max}`);
    return v;
  };
  const known = new Set([
    'agents',
    'layer',
    'link',
    'origin-link',
    'proxies',
    'direct-agents',
    'single-layer',
    'out',
    'tracker-swarms',
    'tracker-peers',
    'skip-cold',
    'skip-warm',
    'skip-direct',
    'skip-single',
    'skip-tracker',
    'skip-cluster',
    'stall-timeout',
    'proxy-upload-slots',
    'help',
  ]);
  for (const a of argv) if (a.startsWith('--') && !known.has(a.slice(2))) throw new Error(`unknown option ${a}`);
  const agents = int('agents', 20, 1, 200);
  const layerBytes = parseBytes(get('layer') ?? '256MB');
  const linkBytesPerSec = parseBytes(get('link') ?? '10MB/s');
  return {
    agents,
    layerBytes,
    linkBytesPerSec,
    originBytesPerSec: get('origin-link') ? parseBytes(get('origin-link')!) : linkBytesPerSec,
    proxies: int('proxies', 1, 1, 20),
    directAgents: int('direct-agents', Math.min(agents, 4), 1, agents),
    singleLayerBytes: get('single-layer') ? parseBytes(get('single-layer')!) : layerBytes,
    out: resolve(get('out') ?? join(ROOT, 'bench-results')),
    cluster: !has('skip-cluster'),
    cold: !has('skip-cold'),
    warm: !has('skip-warm'),
    direct: !has('skip-direct'),
    single: !has('skip-single'),
    tracker: !has('skip-tracker'),
    trackerSwarms: int('tracker-swarms', 100, 1, 10_000),
    trackerPeers: int('tracker-peers', 1000, 1, 100_000),
    stallTimeout: get('stall-timeout') ? int('stall-timeout', 10, 1, 3600) : undefined,
    proxyUploadSlots: get('proxy-upload-slots') ? int('proxy-upload-slots', 64, 1, 1000) : undefined,
  };
}

const t00 = performance.now();
function log(line: string): void {
  const s = ((performance.now() - t00) / 1000).toFixed(1).padStart(7);
  process.stdout.write(`[bench ${s}s] ${line}\n`);
}

function preflight(): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      'npm run bench needs root: it creates network namespaces, veth pairs and tc qdiscs. Run it as root (e.g. sudo npm run bench -- ...).',
    );
  }
  for (const tool of ['docker-registry', 'skopeo', 'curl', 'tc', 'ip']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      throw new Error(`${tool} not found: apt-get install -y docker-registry skopeo curl iproute2`);
    }
  }
}

class SkipCluster extends Error {}

function roleOf(name: string): string {
  return name.replace(/\d+$/, '');
}

async function runPhase(
  cluster: BenchCluster,
  name: PhaseResult['name'],
  image: { repo: string; tag: string; layer: { digest: string; size: number; mediaType: string } },
  agents: number[],
): Promise<PhaseResult> {
  const via = name === 'direct' ? 'origin' : 'agent';
  log(
    `[${name}] ${agents.length} agents pull ${image.repo}:${image.tag} (${formatBytes(image.layer.size)}) ${via === 'agent' ? 'through their agent' : 'straight from the origin'}`,
  );
  cluster.markOrigin();
  const wire0 = cluster.originWireBytes();
  const cpu0 = await machineCpu();
  const procs0 = await cluster.processStats();
  const self0 = await selfAndChildrenCpu();
  const t0 = performance.now();
  let done = 0;
  let lastBytes = 0;
  let lastT = t0;
  const ticker = setInterval(() => {
    void (async () => {
      const bytes = await cluster.clientBytes();
      const now = performance.now();
      const c = await machineCpu();
      // Finished pulls are deleted after their digest check, so only growth is a rate.
      const rate = Math.max(0, bytes - lastBytes) / 1e6 / ((now - lastT) / 1000);
      log(
        `[${name}] ${((now - t0) / 1000).toFixed(0)} s: ${done}/${agents.length} done, clients receiving ${rate.toFixed(1)} MB/s in all, CPU ${Math.round((100 * (c.busy - cpu0.busy)) / (c.total - cpu0.total))}% busy`,
      );
      lastBytes = bytes;
      lastT = now;
    })();
  }, 5000);
  let pulls: PullResult[];
  try {
    pulls = await cluster.pullAll(agents, image, via, (r, n) => {
      done = n;
      log(
        `[${name}] agent${r.agent} ${r.ok && r.digestOk ? 'done' : 'FAILED'} at ${r.seconds.toFixed(1)} s (${n}/${agents.length})${r.error ? `: ${r.error.slice(0, 300)}` : ''}`,
      );
    });
  } finally {
    clearInterval(ticker);
  }
  const wallSeconds = (performance.now() - t0) / 1000;
  const cpu1 = await machineCpu();
  const procs1 = await cluster.processStats();
  const cpuByRole: Record<string, number> = {};
  for (const p of procs1) {
    const before = procs0.find((x) => x.pid === p.pid)?.cpuSeconds ?? 0;
    cpuByRole[roleOf(p.name)] = +((cpuByRole[roleOf(p.name)] ?? 0) + p.cpuSeconds - before).toFixed(2);
  }
  cpuByRole['bench+skopeo'] = +((await selfAndChildrenCpu()) - self0).toFixed(2);
  const busySeconds = (cpu1.busy - cpu0.busy) / 100;
  const ours = Object.values(cpuByRole).reduce((a, b) => a + b, 0);
  // Other work on the machine (other users' builds and tests) competes for the same 2 cores.
  cpuByRole.foreign = +Math.max(0, busySeconds - ours).toFixed(2);
  const times = pulls.map((p) => p.seconds);
  const origin = cluster.originBlobBytes(image.layer.digest);
  const result: PhaseResult = {
    name,
    agents: agents.length,
    pulls,
    p50: quantile(times, 0.5),
    p100: quantile(times, 1),
    wallSeconds,
    originLayerRatio: origin.bytes / image.layer.size,
    originWireBytes: cluster.originWireBytes() - wire0,
    cpuBusy: (cpu1.busy - cpu0.busy) / (cpu1.total - cpu0.total),
    cpuByRole,
  };
  log(
    `[${name}] p50 ${result.p50.toFixed(1)} s, p100 ${result.p100.toFixed(1)} s, origin sent ${result.originLayerRatio.toFixed(2)}× the layer, CPU ${(result.cpuBusy * 100).toFixed(0)}% busy (${JSON.stringify(cpuByRole)} CPU-s)`,
  );
  return result;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (process.argv.includes('--help')) {
    process.stdout.write(`${(await import('node:fs')).readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0]}*/\n`);
    return;
  }
  preflight();
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/Z$/, '');
  const outDir = join(args.out, stamp);
  await mkdir(outDir, { recursive: true });
  const work = await tempDir('p2p-bench-');
  const failures: string[] = [];
  const F = args.layerBytes;
  const bounds = lowerBounds({
    layerBytes: F,
    agents: args.agents,
    seedUpload: args.linkBytesPerSec,
    agentUpload: args.linkBytesPerSec,
    agentDownload: args.linkBytesPerSec,
    originToSeed: Math.min(args.originBytesPerSec, args.linkBytesPerSec),
    originUpload: args.originBytesPerSec,
  });
  log(
    `N=${args.agents} agents, F=${formatBytes(F)}, links ${formatBytes(args.linkBytesPerSec)}/s, origin ${formatBytes(args.originBytesPerSec)}/s, ${args.proxies} prox${args.proxies === 1 ? 'y' : 'ies'}; results → ${outDir}`,
  );
  log(
    `bounds: T*warm ${bounds.warm.toFixed(1)} s, T*cold (store-and-forward) ${bounds.coldStoreAndForward.toFixed(1)} s, T*cold (pipelined) ${bounds.coldPipelined.toFixed(1)} s, direct ≥ ${bounds.direct.toFixed(1)} s`,
  );

  const result: BenchResult = {
    startedAt: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? '?',
      memoryBytes: totalmem(),
      kernel: execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(),
      node: process.version,
    },
    args,
    bounds,
    phases: [],
    ratios: {},
    agents: [],
    processes: [],
    failures,
  };

  const ids = Array.from({ length: args.agents }, (_, i) => i + 1);
  let cluster: BenchCluster | undefined;
  // Set on SIGINT/SIGTERM: no later phase may start processes while the run is being torn down.
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    log('interrupted: tearing down');
    void (cluster?.destroy() ?? Promise.resolve()).then(() => rm(work, { recursive: true, force: true })).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    if (!args.cluster) throw new SkipCluster();
    log('creating hosts and starting origin, tracker, proxies, agents');
    cluster = await BenchCluster.start({
      dir: join(work, 'cluster'),
      agents: args.agents,
      proxies: args.proxies,
      linkBytesPerSec: args.linkBytesPerSec,
      originBytesPerSec: args.originBytesPerSec,
      log,
      ...(args.stallTimeout ? { agentConfig: { stallTimeout: args.stallTimeout } } : {}),
      ...(args.proxyUploadSlots ? { proxyConfig: { uploadSlots: args.proxyUploadSlots } } : {}),
    });
    log('building and pushing the test images');
    const cold = { repo: 'bench/cold', tag: 'v1', layer: await cluster.pushImage('bench/cold', 'v1', F) };
    const warm = { repo: 'bench/warm', tag: 'v1', layer: args.warm ? await cluster.pushImage('bench/warm', 'v1', F) : cold.layer };

    if (args.cold) result.phases.push(await runPhase(cluster, 'cold', cold, ids));
    if (args.warm) {
      log('[warm] the owning proxy fetches the warm layer from the origin');
      cluster.markOrigin();
      const t = performance.now();
      cluster.warmProxy(warm.repo, warm.layer.digest);
      result.proxyFillSeconds = (performance.now() - t) / 1000;
      // The warm-up fetch must land in this ledger period, not in the warm phase's.
      await cluster.originLogged(warm.layer.digest, 1);
      log(
        `[warm] proxy holds it after ${result.proxyFillSeconds.toFixed(1)} s (F/origin bw = ${(F / Math.min(args.originBytesPerSec, args.linkBytesPerSec)).toFixed(1)} s)`,
      );
      result.phases.push(await runPhase(cluster, 'warm', warm, ids));
    }
    const metrics = new Map(ids.map((i) => [i, cluster!.metrics(`agent${i}`)]));
    if (args.direct) {
      const direct = await runPhase(cluster, 'direct', cold, ids.slice(0, args.directAgents));
      result.phases.push(direct);
      // With k ≥ u_origin/d pulls the origin link is the bottleneck: N pulls take N/k times as long.
      const scale = args.agents / args.directAgents;
      result.directExtrapolated = {
        p100: direct.p100 * scale,
        p50:
          quantile(
            direct.pulls.map((p) => p.seconds),
            0.5,
          ) * scale,
        fromAgents: args.directAgents,
      };
    }
    result.processes = await cluster.processStats();
    for (const phase of result.phases) {
      for (const p of phase.pulls)
        if (!p.ok || !p.digestOk) failures.push(`${phase.name}: agent${p.agent} ${p.ok ? 'wrong digest' : p.error}`);
    }
    for (const i of ids) {
      const m = metrics.get(i)!;
      const st = result.processes.find((p) => p.name === `agent${i}`)!;
      const at = (name: string) => result.phases.find((p) => p.name === name)?.pulls.find((p) => p.agent === i)?.seconds;
      result.agents.push({
        agent: i,
        coldSeconds: at('cold'),
        warmSeconds: at('warm'),
        directSeconds: at('direct'),
        peerBytes: metricSum(m, 'p2p_blob_bytes_received_total', 'source="peer"'),
        proxyBytes: metricSum(m, 'p2p_blob_bytes_received_total', 'source="proxy"'),
        relayBytes: metricSum(m, 'p2p_blob_bytes_received_total', 'source="relay"'),
        originBytes: metricSum(m, 'p2p_blob_bytes_fetched_total', 'fetcher="origin"'),
        uploadedBytes: metricSum(m, 'p2p_swarm_uploaded_bytes_total'),
        peakRssBytes: st.peakRssBytes,
        cpuSeconds: st.cpuSeconds,
      });
    }
  } catch (err) {
    if (!(err instanceof SkipCluster)) {
      failures.push(`cluster: ${(err as Error).stack ?? String(err)}`);
      log(`cluster phase failed: ${(err as Error).message}`);
    }
  } finally {
    if (cluster) log('tearing down the hosts');
    await cluster?.destroy();
    cluster = undefined;
  }

  if (args.single && !interrupted) {
    try {
      log(`[single] one agent, unshaped loopback, ${formatBytes(args.singleLayerBytes)} layer`);
      result.single = await runSingleNode(join(work, 'single'), args.singleLayerBytes, (l) => log(`[single] ${l}`));
    } catch (err) {
      failures.push(`single: ${(err as Error).stack ?? String(err)}`);
      log(`single node failed: ${(err as Error).message}`);
    }
  }
  if (args.tracker && !interrupted) {
    try {
      log(`[tracker] ${args.trackerSwarms} swarms × ${args.trackerPeers} peers, one announce each, 64 in flight`);
      result.tracker = await runTrackerLoad(work, {
        swarms: args.trackerSwarms,
        peersPerSwarm: args.trackerPeers,
        concurrency: 64,
        timeLimitSeconds: 120,
      });
      log(
        `[tracker] ${Math.round(result.tracker.announcesPerSecond)} announces/s (${result.tracker.announces} in ${result.tracker.seconds.toFixed(1)} s, ${result.tracker.failed} failed); zero-work HTTP server under the same load: ${Math.round(result.tracker.httpCeilingPerSecond)}/s`,
      );
    } catch (err) {
      failures.push(`tracker: ${(err as Error).stack ?? String(err)}`);
      log(`tracker load failed: ${(err as Error).message}`);
    }
  }
  await rm(work, { recursive: true, force: true });

  result.ratios = ratios(result);
  await writeFile(join(outDir, 'result.json'), JSON.stringify(result, null, 2));
  const svg = renderCdfSvg(chartOf(result));
  await writeFile(join(outDir, 'chart.svg'), svg);
  const png = await svgToPng(join(outDir, 'chart.svg'), join(outDir, 'chart.png'));
  if (!png) log('rsvg-convert not found (apt-get install -y librsvg2-bin): chart.png not written');
  await writeFile(join(outDir, 'summary.md'), renderSummary(result, png));
  log(`wrote ${outDir}/{result.json,summary.md,chart.svg${png ? ',chart.png' : ''}}`);
  process.stdout.write(`\n${renderSummary(result, png)}\n`);
  if (failures.length) {
    log(`${failures.length} failure(s):\n${failures.join('\n')}`);
    process.exitCode = 1;
  }
}

function ratios(r: BenchResult): Record<string, number> {
  const out: Record<string, number> = {};
  const cold = r.phases.find((p) => p.name === 'cold');
  const warm = r.phases.find((p) => p.name === 'warm');
  const direct = r.directExtrapolated;
  if (cold) {
    out.coldP50OverTStarStoreAndForward = cold.p50 / r.bounds.coldStoreAndForward;
    out.coldP100OverTStarStoreAndForward = cold.p100 / r.bounds.coldStoreAndForward;
    out.coldP50OverTStarPipelined = cold.p50 / r.bounds.coldPipelined;
    out.coldP100OverTStarPipelined = cold.p100 / r.bounds.coldPipelined;
    out.coldOriginBytesOverLayer = cold.originLayerRatio;
    if (direct) out.coldSpeedupVsDirect = direct.p100 / cold.p100;
  }
  if (warm) {
    out.warmP50OverTStar = warm.p50 / r.bounds.warm;
    out.warmP100OverTStar = warm.p100 / r.bounds.warm;
    if (direct) out.warmSpeedupVsDirect = direct.p100 / warm.p100;
    // The warm-up fetch happened before the phase's ledger started: the phase itself should be 0.
    out.warmPhaseOriginBytesOverLayer = warm.originLayerRatio;
  }
  if (r.single) {
    out.singleAgentMBps = r.single.agentMBps;
    out.singleRatioToDirect = r.single.ratioToDirect;
    out.coldTtfbSeconds = r.single.coldTtfbSeconds;
  }
  if (r.tracker) out.trackerAnnouncesPerSecond = r.tracker.announcesPerSecond;
  for (const k of Object.keys(out)) out[k] = +out[k].toFixed(3);
  return out;
}

function chartOf(r: BenchResult) {
  const series: CdfSeries[] = [];
  const markers: Marker[] = [];
  const phase = (n: string) => r.phases.find((p) => p.name === n);
  const warm = phase('warm');
  const cold = phase('cold');
  const direct = phase('direct');
  if (warm) series.push({ label: `P2P, proxy warm (N=${warm.agents})`, color: '#1f77b4', times: warm.pulls.map((p) => p.seconds) });
  if (cold)
    series.push({
      label: `P2P, cold: origin → proxy → swarm (N=${cold.agents})`,
      color: '#ff7f0e',
      times: cold.pulls.map((p) => p.seconds),
    });
  if (direct)
    series.push({
      label: `direct from origin, measured (${direct.agents} agents)`,
      color: '#7f7f7f',
      times: direct.pulls.map((p) => p.seconds),
      dashed: true,
    });
  markers.push({ label: 'T* warm (Kumar–Ross)', color: '#1f77b4', t: r.bounds.warm });
  markers.push({ label: 'T* cold (store-and-forward)', color: '#ff7f0e', t: r.bounds.coldStoreAndForward });
  if (r.directExtrapolated)
    markers.push({ label: `direct, ${r.args.agents} agents (extrapolated)`, color: '#7f7f7f', t: r.directExtrapolated.p100 });
  const a = r.args;
  return {
    title: `Per-agent completion time: N=${a.agents}, F=${formatBytes(a.layerBytes)}, links ${formatBytes(a.linkBytesPerSec)}/s`,
    subtitle: `${a.proxies} prox${a.proxies === 1 ? 'y' : 'ies'}, origin link ${formatBytes(a.originBytesPerSec)}/s, ${r.machine.cpus} CPUs, ${r.startedAt.slice(0, 16)}Z`,
    series,
    markers,
  };
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).message}\n`);
  process.exitCode = 1;
});
