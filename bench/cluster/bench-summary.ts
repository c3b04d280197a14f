import { formatBytes } from './bench-math.js';
import type { BenchResult } from './cluster-bench.js';

const n1 = (v: number | undefined) => (v === undefined ? '–' : v.toFixed(1));
const n2 = (v: number | undefined) => (v === undefined ? '–' : v.toFixed(2));
const mb = (v: number) => (v / 1e6).toFixed(1);

/** The markdown summary of one bench run (goals, phases, per-agent table). */
export function renderSummary(r: BenchResult, png: boolean): string {
  const a = r.args;
  const b = r.bounds;
  const phase = (n: string) => r.phases.find((p) => p.name === n);
  const cold = phase('cold');
  const warm = phase('warm');
  const direct = phase('direct');
  const x = r.ratios;
  const goal = (ok: boolean | undefined) => (ok === undefined ? 'not run' : ok ? 'met' : '**missed**');
  const L: string[] = [];
  L.push(`# Bench ${r.startedAt}`);
  L.push('');
  const size = (v: number) => formatBytes(v).replace(' ', '');
  const command = [
    `npm run bench -- --agents ${a.agents} --layer ${size(a.layerBytes)} --link ${size(a.linkBytesPerSec)}/s --proxies ${a.proxies}`,
    a.originBytesPerSec !== a.linkBytesPerSec ? ` --origin-link ${size(a.originBytesPerSec)}/s` : '',
    a.stallTimeout ? ` --stall-timeout ${a.stallTimeout}` : '',
    a.proxyUploadSlots ? ` --proxy-upload-slots ${a.proxyUploadSlots}` : '',
    ` --direct-agents ${a.directAgents}`,
  ].join('');
  L.push(`\`${command}\``);
  L.push('');
  L.push(
    `Machine: ${r.machine.cpus} × ${r.machine.cpuModel}, ${formatBytes(r.machine.memoryBytes)} RAM, Linux ${r.machine.kernel}, Node ${r.machine.node}.`,
  );
  L.push('');
  L.push(
    `Bounds (F = ${formatBytes(a.layerBytes)}, u_s = proxy upload = ${formatBytes(a.linkBytesPerSec)}/s, u_i = d_i = ${formatBytes(a.linkBytesPerSec)}/s, N = ${a.agents}):`,
  );
  L.push(
    `T*warm = max(F/u_s, F/d_min, N·F/(u_s+Σu_i)) = **${b.warm.toFixed(1)} s**; cold, agents relay the proxy's origin fetch, so ` +
      `T*cold = max(F/origin_bw, T*warm) = **${b.coldPipelined.toFixed(1)} s** (store-and-forward, as before the relay: F/origin_bw + T*warm = ${b.coldStoreAndForward.toFixed(1)} s); direct ≥ max(F/d, N·F/u_origin) = ${b.direct.toFixed(1)} s.`,
  );
  L.push('');
  if (png) L.push('![completion-time CDF](chart.png)\n');
  L.push('| goal | target | measured | |');
  L.push('|---|---|---|---|');
  if (warm) {
    L.push(`| T_p100 / T* (proxy warm) | ≤ 1.30 | ${n2(x.warmP100OverTStar)} | ${goal(x.warmP100OverTStar <= 1.3)} |`);
    L.push(`| T_p50 / T* (proxy warm) | ≤ 1.15 | ${n2(x.warmP50OverTStar)} | ${goal(x.warmP50OverTStar <= 1.15)} |`);
  }
  if (cold) {
    // The agents relay the proxy's origin fetch, so the cold bound is the pipelined one; the
    // store-and-forward ratio stays for comparison with runs before the relay (7555f5d).
    L.push(
      `| T_p100 / T* (cold, pipelined) | ≤ 1.30 | ${n2(x.coldP100OverTStarPipelined)} (store-and-forward bound: ${n2(x.coldP100OverTStarStoreAndForward)}) | ${goal(x.coldP100OverTStarPipelined <= 1.3)} |`,
    );
    L.push(
      `| T_p50 / T* (cold, pipelined) | ≤ 1.15 | ${n2(x.coldP50OverTStarPipelined)} (store-and-forward bound: ${n2(x.coldP50OverTStarStoreAndForward)}) | ${goal(x.coldP50OverTStarPipelined <= 1.15)} |`,
    );
    L.push(
      `| origin bytes ÷ layer (cold phase) | 1.00 | ${n2(x.coldOriginBytesOverLayer)} | ${goal(Math.abs(x.coldOriginBytesOverLayer - 1) < 0.005)} |`,
    );
  }
  if (r.directExtrapolated) {
    if (warm)
      L.push(`| speedup vs direct (p100, proxy warm) | ≥ 16× | ${n1(x.warmSpeedupVsDirect)}× | ${goal(x.warmSpeedupVsDirect >= 16)} |`);
    if (cold) L.push(`| speedup vs direct (p100, cold) | ≥ 16× | ${n1(x.coldSpeedupVsDirect)}× | ${goal(x.coldSpeedupVsDirect >= 16)} |`);
  }
  if (r.single) {
    L.push(`| one agent, proxy warm, loopback | ≥ 300 MB/s | ${r.single.agentMBps.toFixed(0)} MB/s | ${goal(r.single.agentMBps >= 300)} |`);
    L.push(
      `| one agent ÷ skopeo direct | ≥ 0.5× | ${r.single.ratioToDirect.toFixed(2)}× (direct ${r.single.directMBps.toFixed(0)} MB/s) | ${goal(r.single.ratioToDirect >= 0.5)} |`,
    );
    L.push(
      `| cold TTFB (nothing cached) | ≤ 1 s | ${r.single.coldTtfbSeconds.toFixed(2)} s (proxy warm: ${r.single.warmProxyTtfbSeconds.toFixed(2)} s, direct ${r.single.directTtfbSeconds.toFixed(3)} s) | ${goal(r.single.coldTtfbSeconds <= 1)} |`,
    );
  }
  if (r.tracker) {
    L.push(
      `| tracker announces/s (${r.tracker.swarms} swarms × ${r.tracker.peersPerSwarm} peers) | ≥ 10k | ${Math.round(r.tracker.announcesPerSecond)} (${r.tracker.failed} failed) | ${goal(r.tracker.announcesPerSecond >= 10_000)} |`,
    );
    L.push(
      `| ↳ same load on a zero-work Node HTTP server (this machine's ceiling) | | ${Math.round(r.tracker.httpCeilingPerSecond)} | tracker at ${Math.round((100 * r.tracker.announcesPerSecond) / r.tracker.httpCeilingPerSecond)} % of it |`,
    );
  }
  L.push('');
  L.push('| phase | agents | p50 s | p100 s | origin layer bytes ÷ F | origin wire bytes | CPU busy (2 cores) | CPU-s by role |');
  L.push('|---|---|---|---|---|---|---|---|');
  for (const p of r.phases) {
    L.push(
      `| ${p.name} | ${p.agents} | ${p.p50.toFixed(1)} | ${p.p100.toFixed(1)} | ${p.originLayerRatio.toFixed(3)} | ${formatBytes(p.originWireBytes)} | ${(p.cpuBusy * 100).toFixed(0)}% | ${Object.entries(
        p.cpuByRole,
      )
        .map(([k, v]) => `${k} ${v.toFixed(0)}`)
        .join(', ')} |`,
    );
  }
  if (r.directExtrapolated) {
    L.push('');
    L.push(
      `Direct baseline for N=${a.agents}: measured with ${r.directExtrapolated.fromAgents} agents (p100 ${n1(direct?.p100)} s) and scaled by N/k = ${(a.agents / r.directExtrapolated.fromAgents).toFixed(1)} ` +
        `because the origin's link is the bottleneck (k·F/u_origin ≥ F/d): **${r.directExtrapolated.p100.toFixed(1)} s** (bound ${b.direct.toFixed(1)} s).`,
    );
  }
  if (r.proxyFillSeconds !== undefined)
    L.push(
      `\nProxy fill (origin → proxy, warm layer): ${r.proxyFillSeconds.toFixed(1)} s (F/origin bw = ${(a.layerBytes / Math.min(a.linkBytesPerSec, a.originBytesPerSec)).toFixed(1)} s).`,
    );
  if (r.agents.length) {
    L.push('');
    L.push('Per agent (bytes over the cold + warm phases; RSS is the peak over the whole run):');
    L.push('');
    L.push(
      '| agent | cold s | warm s | direct s | from peers MB | from proxy MB | relayed by proxy MB | from origin MB | uploaded MB | peak RSS MB | CPU s |',
    );
    L.push('|---|---|---|---|---|---|---|---|---|---|---|');
    for (const g of r.agents) {
      L.push(
        `| ${g.agent} | ${n1(g.coldSeconds)} | ${n1(g.warmSeconds)} | ${n1(g.directSeconds)} | ${mb(g.peerBytes)} | ${mb(g.proxyBytes)} | ${mb(g.relayBytes)} | ${mb(g.originBytes)} | ${mb(g.uploadedBytes)} | ${(g.peakRssBytes / 1e6).toFixed(0)} | ${g.cpuSeconds.toFixed(1)} |`,
      );
    }
    const others = r.processes.filter((p) => !p.name.startsWith('agent'));
    L.push('');
    L.push(
      `Other processes: ${others.map((p) => `${p.name} peak RSS ${(p.peakRssBytes / 1e6).toFixed(0)} MB, ${p.cpuSeconds.toFixed(1)} CPU-s`).join('; ')}.`,
    );
  }
  if (r.single) {
    const s = r.single;
    L.push('');
    L.push(
      `Single node (${formatBytes(s.layerBytes)}): agent ${s.agentSeconds.toFixed(2)} s, direct ${s.directSeconds.toFixed(2)} s; agent peak RSS ${(s.agentPeakRssBytes / 1e6).toFixed(0)} MB, agent ${s.agentCpuSeconds.toFixed(1)} CPU-s, proxy ${s.proxyCpuSeconds.toFixed(1)} CPU-s.`,
    );
  }
  if (r.failures.length) {
    L.push('');
    L.push('## Failures');
    for (const f of r.failures) L.push(`- ${f.split('\n')[0]}`);
  }
  return `${L.join('\n')}\n`;
}
