/**
 * CPU milliseconds per MB delivered on each data path (agent ← warm proxy, proxy seeding, three
 * agents at once, agent ← origin, proxy cold fill, curl ← docker-registry), optionally side by side
 * with a baseline build, alternating baseline and candidate within each round. See README.md here.
 *
 *   npm run bench:datapath -- --baseline 63e8147 --rounds 3 --blob-mb 512
 *
 * Needs docker-registry, skopeo, htpasswd and curl (Debian packages; .ci/run installs them). Everything listens on 127.0.0.1.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'undici';
import { REPO_ROOT } from '../cluster/local-app.js';
import { OciLayout, pushImage, type Descriptor } from '../../test/support/oci-image.js';
import { startOriginRegistry, type OriginRegistry } from '../../test/support/origin-registry.js';
import { baselineDir, describeBuild, prepareBaseline, removeBaseline, type BuildUnderTest } from './baseline-build.js';
import { attachTo, run, startApp, stopAllChildren, type RunningApp } from './bench-processes.js';
import {
  DatapathBenchError,
  formatTable,
  METRICS,
  metricSum,
  parseBenchArgs,
  summarize,
  USAGE,
  type BenchOptions,
  type BuildName,
  type RowName,
  type Sample,
} from './datapath-stats.js';
import { cpuTicks, quiesce, rssSampler, type CpuTicks } from './proc-sampler.js';

const MB = 1e6;
const USER = 'bench';
const PASSWORD = 'bench-pass';
const CREDS = `${USER}:${PASSWORD}`;
const BASIC = `Basic ${Buffer.from(CREDS).toString('base64')}`;
const SWARM_TOKEN = 'datapath-bench-swarm-token';

type Phase = 'warm' | 'agents3' | 'direct' | 'origin' | 'cold';

const log = (line: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);

/** One build's long-lived tracker and proxy; agents come and go per round with fresh data dirs. */
interface Stack {
  tracker: RunningApp;
  proxy: RunningApp;
}

class DatapathBench {
  private registry?: OriginRegistry;
  private readonly stacks = new Map<BuildName, Stack>();
  private readonly builds = new Map<BuildName, BuildUnderTest>();
  private agentSeq = 0;
  private warmBlob?: Descriptor;
  private readonly coldBlobs = new Map<string, Descriptor>();
  /** curl ← origin wall seconds per `${round}/${build}`, the denominator of the wall ratios. */
  private readonly directWall = new Map<string, number>();
  readonly samples: Sample[] = [];
  private clkTck = 100;
  private readonly startedAt = new Date();
  readonly resultDir = join(REPO_ROOT, 'bench-results', `datapath-${this.startedAt.toISOString().replace(/[:.]/g, '-')}`);

  constructor(
    private readonly opts: BenchOptions,
    private readonly scratch: string,
  ) {}

  private get common() {
    return { swarmTokenFile: join(this.scratch, 'swarm-token'), p2pPort: 0, minFreeSpace: '10MB' };
  }

  private phases(): Phase[] {
    const has = (...rows: RowName[]) => rows.some((r) => this.opts.rows.includes(r));
    const all: [Phase, boolean][] = [
      ['warm', has('agent-warm', 'proxy-seed')],
      ['agents3', has('agents-3')],
      ['direct', has('direct', 'agent-origin', 'proxy-cold')],
      ['origin', has('agent-origin')],
      ['cold', has('proxy-cold')],
    ];
    return all.filter(([, on]) => on).map(([p]) => p);
  }

  async run(): Promise<void> {
    await mkdir(this.resultDir, { recursive: true });
    this.clkTck = Number((await run('getconf', ['CLK_TCK'])).trim()) || 100;
    const candidateRoot = resolve(this.opts.candidateDir ?? REPO_ROOT);
    if (this.opts.baseline) this.builds.set('baseline', await prepareBaseline(REPO_ROOT, this.opts.baseline, log));
    this.builds.set('candidate', await describeBuild(candidateRoot, 'candidate'));
    for (const [name, b] of this.builds) log(`${name}: ${b.root} (HEAD ${b.commit.slice(0, 7)})`);

    const phases = this.phases();
    await writeFile(this.common.swarmTokenFile, SWARM_TOKEN);
    this.registry = await startOriginRegistry({ dir: join(this.scratch, 'origin'), auth: { username: USER, password: PASSWORD } });
    await this.prepareBlobs(phases.includes('cold'));
    if (phases.some((p) => p === 'warm' || p === 'agents3' || p === 'cold')) {
      for (const name of this.builds.keys()) await this.startStack(name, phases.includes('warm') || phases.includes('agents3'));
    }

    const names = [...this.builds.keys()];
    for (let round = 1; round <= this.opts.rounds; round++) {
      // Alternating who goes first cancels a drift (page cache, other tenants) across rounds.
      const order = round % 2 === 1 ? names : [...names].reverse();
      for (const phase of phases) {
        for (const name of order) await this.runPhase(phase, name, round);
      }
      await this.writeResult();
    }
  }

  /** The warm blob (also the origin and direct rows' blob) and, for proxy-cold, a new one per round and build. */
  private async prepareBlobs(cold: boolean): Promise<void> {
    const bytes = this.opts.blobMb * MB;
    const layout = new OciLayout(join(this.scratch, 'layout'));
    const host = this.registry!.host;
    const tags = ['warm'];
    if (cold) for (let r = 1; r <= this.opts.rounds; r++) for (const name of this.builds.keys()) tags.push(`cold-${name}-${r}`);
    log(`pushing ${tags.length} image(s) of ${this.opts.blobMb} MB random to docker-registry ${host}…`);
    for (const tag of tags) {
      const layer = (await layout.addImage(tag, [bytes])).layers[0];
      await pushImage(layout.dir, tag, { host, repo: `datapath/${tag}`, creds: CREDS });
      if (tag === 'warm') this.warmBlob = layer;
      else this.coldBlobs.set(tag, layer);
    }
    await rm(layout.dir, { recursive: true, force: true });
    // Writeback of GBs of layers would otherwise run during the first measured transfers.
    await run('sync', []);
  }

  private async startStack(name: BuildName, warm: boolean): Promise<void> {
    const build = this.builds.get(name)!;
    const dir = join(this.scratch, name);
    await mkdir(dir, { recursive: true });
    const tracker = await startApp(build.root, 'tracker', `${name}-tracker`, dir, {
      swarmTokenFile: this.common.swarmTokenFile,
      announceRate: 0,
    });
    const proxy = await startApp(build.root, 'proxy', `${name}-proxy`, dir, {
      ...this.common,
      registry: this.registry!.url,
      dataDir: join(dir, 'proxy-data'),
      trackers: [`${tracker.url}/announce`],
    });
    this.stacks.set(name, { tracker, proxy });
    if (warm) {
      log(`${name}: proxy fetches and seeds the warm blob`);
      await torrentOf(proxy, 'datapath/warm', this.warmBlob!.digest);
    }
  }

  /** A fresh agent with an empty data dir, using the build's proxy and tracker when given them. */
  private async startAgent(name: BuildName, stack?: Stack): Promise<RunningApp> {
    const dir = join(this.scratch, name);
    const id = `agent-${++this.agentSeq}`;
    await mkdir(dir, { recursive: true });
    const swarm = stack ? { proxies: [stack.proxy.url], trackers: [`${stack.tracker.url}/announce`] } : { proxies: [] };
    return startApp(this.builds.get(name)!.root, 'agent', `${name}-${id}`, dir, {
      ...this.common,
      registry: this.registry!.url,
      dataDir: join(dir, id),
      ...swarm,
    });
  }

  private async stopAgents(name: BuildName, agents: RunningApp[]): Promise<void> {
    await Promise.all(agents.map((a) => a.stop()));
    await Promise.all(agents.map((a) => rm(join(this.scratch, name, a.name.slice(name.length + 1)), { recursive: true, force: true })));
  }

  private async runPhase(phase: Phase, name: BuildName, round: number): Promise<void> {
    const rowsOf: Record<Phase, RowName[]> = {
      warm: ['agent-warm', 'proxy-seed'],
      agents3: ['agents-3'],
      direct: ['direct'],
      origin: ['agent-origin'],
      cold: ['proxy-cold'],
    };
    try {
      const got = await this.phase[phase](name, round);
      for (const s of got) {
        this.samples.push(s);
        if (this.opts.rows.includes(s.row) || phase === 'direct')
          log(`round ${round}/${this.opts.rounds} ${name.padEnd(9)} ${describe(s)}`);
      }
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      log(`round ${round}/${this.opts.rounds} ${name.padEnd(9)} ${phase} FAILED: ${error.split('\n').slice(0, 12).join('\n')}`);
      for (const row of rowsOf[phase]) this.samples.push({ row, build: name, round, values: {}, error });
    }
  }

  private readonly phase: Record<Phase, (name: BuildName, round: number) => Promise<Sample[]>> = {
    warm: (n, r) => this.warmPull(n, r),
    agents3: (n, r) => this.threeAgents(n, r),
    direct: (n, r) => this.directPull(n, r),
    origin: (n, r) => this.originFill(n, r),
    cold: (n, r) => this.coldFill(n, r),
  };

  private msPerMB(ticks: number, bytes: number): number {
    return (ticks * 1000) / this.clkTck / (bytes / MB);
  }

  /**
   * CPU and main-thread ms/MB of the transfer, and `tailMsPerMB`: CPU the process still used after
   * the client had the last byte, until it went quiet (deferred hashing or writes; not in cpuMsPerMB).
   */
  private cpuValues(d: CpuTicks, tail: number, bytes: number, prefix = ''): Record<string, number> {
    const key = (k: string) => (prefix ? `${prefix}${k[0].toUpperCase()}${k.slice(1)}` : k);
    return {
      [key('cpuMsPerMB')]: this.msPerMB(d.total, bytes),
      [key('mainMsPerMB')]: this.msPerMB(d.main, bytes),
      [key('tailMsPerMB')]: this.msPerMB(tail, bytes),
    };
  }

  private agentUrl(agent: RunningApp, repo: string, digest: string): string {
    return `${agent.url}/v2/${repo}/blobs/${digest}`;
  }

  private async warmPull(name: BuildName, round: number): Promise<Sample[]> {
    const stack = this.stacks.get(name)!;
    const agent = await this.startAgent(name, stack);
    try {
      const blob = this.warmBlob!;
      const m = await measured([agent.pid, stack.proxy.pid], () => curlBlob(this.agentUrl(agent, 'datapath/warm', blob.digest), blob.size));
      const [a, p] = m.cpu;
      const [aTail, pTail] = m.tail;
      return [
        {
          row: 'agent-warm',
          build: name,
          round,
          values: {
            ...this.cpuValues(a, aTail, m.result.bytes),
            mbPerS: m.result.bytes / MB / m.result.seconds,
            peakRssMB: m.peaks[0] / MB,
            wallS: m.result.seconds,
          },
        },
        { row: 'proxy-seed', build: name, round, values: this.cpuValues(p, pTail, m.result.bytes) },
      ];
    } finally {
      await this.stopAgents(name, [agent]);
    }
  }

  private async threeAgents(name: BuildName, round: number): Promise<Sample[]> {
    const stack = this.stacks.get(name)!;
    const agents: RunningApp[] = [];
    try {
      for (let i = 0; i < 3; i++) agents.push(await this.startAgent(name, stack));
      const blob = this.warmBlob!;
      const m = await measured([...agents.map((a) => a.pid), stack.proxy.pid], async () => {
        const t0 = performance.now();
        const got = await Promise.all(agents.map((a) => curlBlob(this.agentUrl(a, 'datapath/warm', blob.digest), blob.size)));
        return { bytes: got.reduce((s, g) => s + g.bytes, 0), seconds: (performance.now() - t0) / 1000 };
      });
      const sum = m.cpu.slice(0, 3).reduce((s, d) => ({ total: s.total + d.total, main: s.main + d.main }), { total: 0, main: 0 });
      const values = {
        ...this.cpuValues(sum, m.tail[0] + m.tail[1] + m.tail[2], m.result.bytes),
        ...this.cpuValues(m.cpu[3], m.tail[3], m.result.bytes, 'proxy'),
        mbPerS: m.result.bytes / MB / m.result.seconds,
        peakRssMB: Math.max(...m.peaks.slice(0, 3)) / MB,
        wallS: m.result.seconds,
      };
      return [{ row: 'agents-3', build: name, round, values }];
    } finally {
      await this.stopAgents(name, agents);
    }
  }

  private async directPull(name: BuildName, round: number): Promise<Sample[]> {
    const blob = this.warmBlob!;
    const m = await measured([this.registry!.pid], () =>
      curlBlob(`${this.registry!.url}/v2/datapath/warm/blobs/${blob.digest}`, blob.size),
    );
    this.directWall.set(`${round}/${name}`, m.result.seconds);
    const values = {
      mbPerS: m.result.bytes / MB / m.result.seconds,
      wallS: m.result.seconds,
      registryCpuMsPerMB: this.msPerMB(m.cpu[0].total, m.result.bytes),
    };
    return [{ row: 'direct', build: name, round, values }];
  }

  private ratioToDirect(name: BuildName, round: number, seconds: number): Record<string, number> {
    const direct = this.directWall.get(`${round}/${name}`);
    return direct ? { wallToDirect: seconds / direct } : {};
  }

  private async originFill(name: BuildName, round: number): Promise<Sample[]> {
    const agent = await this.startAgent(name);
    try {
      const blob = this.warmBlob!;
      const m = await measured([agent.pid], () => curlBlob(this.agentUrl(agent, 'datapath/warm', blob.digest), blob.size));
      const values = {
        ...this.cpuValues(m.cpu[0], m.tail[0], m.result.bytes),
        mbPerS: m.result.bytes / MB / m.result.seconds,
        peakRssMB: m.peaks[0] / MB,
        wallS: m.result.seconds,
        ...this.ratioToDirect(name, round, m.result.seconds),
      };
      return [{ row: 'agent-origin', build: name, round, values }];
    } finally {
      await this.stopAgents(name, [agent]);
    }
  }

  private async coldFill(name: BuildName, round: number): Promise<Sample[]> {
    const stack = this.stacks.get(name)!;
    const tag = `cold-${name}-${round}`;
    const blob = this.coldBlobs.get(tag)!;
    const agent = await this.startAgent(name, stack);
    try {
      // How the proxy delivered the blob (relay stream or BitTorrent pieces) depends on when its torrent was ready.
      const before = await proxyCounters(stack.proxy);
      const m = await measured([stack.proxy.pid, agent.pid], async () => {
        // A profiler (--attach-proxy) runs from before the first request to the torrent, whose CPU it adds to the figures.
        const profiler = this.opts.attachProxy
          ? await attachTo(this.opts.attachProxy, stack.proxy.pid, join(this.resultDir, `${name}-proxy-cold-r${round}`))
          : undefined;
        try {
          const got = await curlBlob(this.agentUrl(agent, `datapath/${tag}`, blob.digest), blob.size);
          // The proxy's work ends with the torrent made; this waits for it if the client was faster.
          await torrentOf(stack.proxy, `datapath/${tag}`, blob.digest);
          return got;
        } finally {
          await profiler?.stop();
        }
      });
      const after = await proxyCounters(stack.proxy);
      // Piece bytes the agent received and threw away (not wanted, not requested, duplicates): proxy upload for nothing.
      const agentMetrics = await request(`${agent.url}/metrics`).then((r) => r.body.text());
      const values = {
        ...this.cpuValues(m.cpu[0], m.tail[0], m.result.bytes),
        ...this.cpuValues(m.cpu[1], m.tail[1], m.result.bytes, 'agent'),
        relayMB: (after.served - before.served) / MB,
        swarmUpMB: (after.uploaded - before.uploaded) / MB,
        agentDiscardedMB: metricSum(agentMetrics, 'p2p_swarm_discarded_bytes_total') / MB,
        proxyMajorGcs: after.majorGcs - before.majorGcs,
        proxyHeapMB: after.heap / MB,
        mbPerS: m.result.bytes / MB / m.result.seconds,
        peakRssMB: m.peaks[1] / MB,
        proxyPeakRssMB: m.peaks[0] / MB,
        wallS: m.result.seconds,
        ...this.ratioToDirect(name, round, m.result.seconds),
      };
      return [{ row: 'proxy-cold', build: name, round, values }];
    } finally {
      await this.stopAgents(name, [agent]);
    }
  }

  async writeResult(): Promise<string> {
    const withBaseline = this.builds.has('baseline');
    const summary = summarize(this.samples, this.opts.rows);
    const table = formatTable(summary, withBaseline);
    await mkdir(this.resultDir, { recursive: true });
    const result = {
      startedAt: this.startedAt.toISOString(),
      options: this.opts,
      blobBytes: this.warmBlob?.size,
      clkTck: this.clkTck,
      builds: Object.fromEntries(
        [...this.builds].map(([n, b]) => [n, { root: b.root, commit: b.commit, ref: n === 'baseline' ? this.opts.baseline : undefined }]),
      ),
      summary,
      samples: this.samples,
    };
    await writeFile(join(this.resultDir, 'result.json'), `${JSON.stringify(result, null, 2)}\n`);
    await writeFile(join(this.resultDir, 'summary.md'), `${table}\n`);
    return table;
  }

  /** Stops every app (by PID, via the child handles) and the registry; removes the scratch dir. */
  async teardown(): Promise<void> {
    await stopAllChildren();
    await this.registry?.stop().catch(() => undefined);
    await rm(this.scratch, { recursive: true, force: true });
  }
}

/** Asks the proxy for a blob's torrent (it fetches, hashes and seeds the blob first if it must). */
async function torrentOf(proxy: RunningApp, repo: string, digest: string): Promise<void> {
  const res = await request(`${proxy.url}/v1/blobs/${digest}/torrent?repo=${encodeURIComponent(repo)}`, {
    headers: { 'x-p2p-swarm-token': SWARM_TOKEN, authorization: BASIC },
    headersTimeout: 1_800_000,
    bodyTimeout: 1_800_000,
  });
  await res.body.dump();
  if (res.statusCode !== 200) throw new DatapathBenchError(`${proxy.name}: torrent of ${digest} answered ${res.statusCode}`);
}

/** The proxy's relay (blob bytes served) and BitTorrent upload counters and its heap used, in bytes; its major GCs so far. */
async function proxyCounters(proxy: RunningApp): Promise<{ served: number; uploaded: number; heap: number; majorGcs: number }> {
  const res = await request(`${proxy.url}/metrics`);
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new DatapathBenchError(`${proxy.name}: /metrics answered ${res.statusCode}`);
  return {
    served: metricSum(text, 'p2p_blob_bytes_served_total'),
    uploaded: metricSum(text, 'p2p_swarm_uploaded_bytes_total'),
    // Builds before the issue #13 metrics work named the default metrics p2p_nodejs_*.
    heap: metricSum(text, 'nodejs_heap_size_used_bytes') || metricSum(text, 'p2p_nodejs_heap_size_used_bytes'),
    majorGcs:
      metricSum(text, 'nodejs_gc_duration_seconds_count', 'kind="major"') ||
      metricSum(text, 'p2p_nodejs_gc_duration_seconds_count', 'kind="major"'),
  };
}

/** `curl -o /dev/null` of a blob with the origin's credentials; checks the byte count. */
async function curlBlob(url: string, size: number): Promise<{ bytes: number; seconds: number }> {
  const out = await run('curl', [
    '-sS',
    '-f',
    '--max-time',
    '1800',
    '-u',
    CREDS,
    '-o',
    '/dev/null',
    '-w',
    '%{size_download} %{time_total}',
    url,
  ]);
  const [bytes, seconds] = out.trim().split(' ').map(Number);
  if (bytes !== size) throw new DatapathBenchError(`GET ${url}: ${bytes} bytes, expected ${size}`);
  return { bytes, seconds };
}

/**
 * Runs a transfer with CPU ticks read just before and after it and VmRSS sampled every 20 ms, per
 * process, after the processes have gone quiet; `tail` is the ticks from the transfer's end until
 * they are quiet again.
 */
async function measured<T>(
  pids: number[],
  transfer: () => Promise<T>,
): Promise<{ result: T; cpu: CpuTicks[]; tail: number[]; peaks: number[] }> {
  await quiesce(pids);
  const rss = rssSampler(pids);
  const before = await Promise.all(pids.map(cpuTicks));
  let result: T;
  try {
    result = await transfer();
  } catch (err) {
    rss.stop();
    throw err;
  }
  const after = await Promise.all(pids.map(cpuTicks));
  await quiesce(pids);
  const settled = await Promise.all(pids.map(cpuTicks));
  const peaks = rss.stop();
  return {
    result,
    cpu: pids.map((_, i) => ({ total: after[i].total - before[i].total, main: after[i].main - before[i].main })),
    tail: pids.map((_, i) => settled[i].total - after[i].total),
    peaks: pids.map((p) => peaks.get(p) ?? 0),
  };
}

function describe(s: Sample): string {
  const parts = METRICS.filter((m) => m.row === s.row && s.values[m.key] !== undefined).map(
    (m) => `${m.label} ${s.values[m.key].toFixed(m.digits)}`,
  );
  return `${s.row.padEnd(12)} ${parts.join(', ')}`;
}

async function main(): Promise<number> {
  let opts: BenchOptions;
  try {
    opts = parseBenchArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  if (opts.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const scratch = await mkdtemp(join(tmpdir(), 'p2p-datapath-'));
  const bench = new DatapathBench(opts, scratch);
  let tornDown: Promise<void> | undefined;
  const teardown = () => (tornDown ??= bench.teardown());
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      log(`${sig}: stopping the apps and the registry, removing ${scratch}`);
      void teardown().finally(() => process.exit(130));
    });
  }
  try {
    await bench.run();
    const table = await bench.writeResult();
    process.stdout.write(
      `\n${table}\n\nMB = 10^6 bytes delivered; CPU = utime+stime from /proc; medians of ${opts.rounds} round(s).\nresult: ${bench.resultDir}/result.json\n`,
    );
    return bench.samples.some((s) => s.error) ? 1 : 0;
  } catch (err) {
    process.stderr.write(`datapath bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  } finally {
    await teardown();
    if (opts.baseline && opts.removeBaseline) {
      await removeBaseline(REPO_ROOT, baselineDir(opts.baseline)).catch((err: unknown) =>
        log(`could not remove the baseline worktree: ${(err as Error).message}`),
      );
    }
  }
}

process.exitCode = await main();
