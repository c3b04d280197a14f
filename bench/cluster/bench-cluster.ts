import { createWriteStream } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { P2P_BIN as BIN, REPO_ROOT as ROOT } from './local-app.js';
import { rendezvousOrder } from '../../libs/swarm/src/proxy/ring/rendezvous.js';
import { NetnsCluster, type Host } from '../../test/harness/netns-cluster.js';
import { fileDigest, OciLayout, type Descriptor } from '../../test/support/oci-image.js';

export interface BenchClusterOptions {
  /** Scratch directory for configs, data dirs and pulled images (the caller removes it). */
  dir: string;
  agents: number;
  proxies: number;
  /** Upload and download cap of every agent and proxy host, bytes/s. */
  linkBytesPerSec: number;
  /** Upload and download cap of the origin registry's host, bytes/s (default: the link). */
  originBytesPerSec?: number;
  /** Progress lines go here. */
  log?: (line: string) => void;
  /** Extra agent config keys (e.g. stallTimeout). */
  agentConfig?: Record<string, unknown>;
  proxyConfig?: Record<string, unknown>;
}

export interface PullResult {
  agent: number;
  ok: boolean;
  /** Seconds from the common start to skopeo's exit. */
  seconds: number;
  /** sha256 of the pulled layer file matched its digest. */
  digestOk: boolean;
  error?: string;
}

export interface ProcessStats {
  name: string;
  pid: number;
  /** Peak resident set (VmHWM), bytes. */
  peakRssBytes: number;
  /** utime + stime so far, seconds. */
  cpuSeconds: number;
}

interface Service {
  name: string;
  host: Host;
  proc: ChildProcess;
  output(): string;
}

const AGENT_PORT = 5004;
const PROXY_PORT = 5005;
const TRACKER_PORT = 6969;
const ORIGIN_PORT = 5000;
const SWARM_TOKEN = 'bench-swarm-token';
const ADMIN_TOKEN = 'bench-admin-token';
const CLK_TCK = 100;
const LOG_TAIL = 64 * 1024;

/**
 * The whole product on emulated hosts: origin registry, tracker, P proxies and N agents, each in
 * its own network namespace with tc caps, clients (skopeo) running inside their agent's host. All
 * HTTP to a host is made from inside a host (`curl` via `ip netns exec`), never from the root
 * namespace. `destroy()` stops everything by PID and removes the namespaces.
 */
export class BenchCluster {
  private services: Service[] = [];
  private originLog = '';
  private originLogStart = 0;

  private constructor(
    readonly options: BenchClusterOptions,
    readonly net: NetnsCluster,
  ) {}

  get origin(): Host {
    return this.net.host('origin');
  }
  /** Base URL of the origin as seen from inside the test network. */
  get originUrl(): string {
    return `http://${this.origin.ip}:${ORIGIN_PORT}`;
  }
  agentHost(i: number): Host {
    return this.net.host(`agent${i}`);
  }
  proxyUrls(): string[] {
    return Array.from({ length: this.options.proxies }, (_, i) => `http://${this.net.host(`proxy${i + 1}`).ip}:${PROXY_PORT}`);
  }

  /** Creates the hosts and starts origin, tracker, proxies and agents (agents a few at a time). */
  static async start(options: BenchClusterOptions): Promise<BenchCluster> {
    const link = options.linkBytesPerSec;
    const originCap = options.originBytesPerSec ?? link;
    const specs = [
      { name: 'origin', uploadBytesPerSec: originCap, downloadBytesPerSec: originCap },
      { name: 'tracker' },
      ...Array.from({ length: options.proxies }, (_, i) => ({ name: `proxy${i + 1}`, uploadBytesPerSec: link, downloadBytesPerSec: link })),
      ...Array.from({ length: options.agents }, (_, i) => ({ name: `agent${i + 1}`, uploadBytesPerSec: link, downloadBytesPerSec: link })),
    ];
    const net = await NetnsCluster.create(specs);
    const cluster = new BenchCluster(options, net);
    try {
      await cluster.boot();
    } catch (err) {
      await cluster.destroy();
      throw err;
    }
    return cluster;
  }

  private log(line: string): void {
    this.options.log?.(line);
  }

  private async boot(): Promise<void> {
    const { dir } = this.options;
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'swarm-token'), `${SWARM_TOKEN}\n`);
    await writeFile(join(dir, 'admin-token'), `${ADMIN_TOKEN}\n`);
    await this.startOrigin();
    const tokens = {
      swarmTokenFile: join(dir, 'swarm-token'),
      adminTokenFile: join(dir, 'admin-token'),
      logFormat: 'json',
      host: '0.0.0.0',
    };
    const tracker = this.net.host('tracker');
    await this.startApp('tracker', tracker, { ...tokens, port: TRACKER_PORT, announceRate: 0, peersCacheLength: 5000 });
    const trackers = [`http://${tracker.ip}:${TRACKER_PORT}/announce`];
    for (let i = 1; i <= this.options.proxies; i++) {
      await this.startApp(`proxy${i}`, this.net.host(`proxy${i}`), {
        ...tokens,
        port: PROXY_PORT,
        p2pPort: 6882,
        registry: this.originUrl,
        dataDir: join(dir, `proxy${i}`),
        trackers,
        minFreeSpace: '10MB',
        ...this.options.proxyConfig,
      });
    }
    this.log(
      `origin, tracker and ${this.options.proxies} prox${this.options.proxies === 1 ? 'y' : 'ies'} up; starting ${this.options.agents} agents`,
    );
    const ids = Array.from({ length: this.options.agents }, (_, i) => i + 1);
    // A few at a time: 20 Node processes booting at once on 2 cores take longer than in small batches.
    for (let k = 0; k < ids.length; k += 4) {
      await Promise.all(
        ids.slice(k, k + 4).map((i) =>
          this.startApp(`agent${i}`, this.agentHost(i), {
            ...tokens,
            port: AGENT_PORT,
            p2pPort: 6881,
            registry: this.originUrl,
            dataDir: join(dir, `agent${i}`),
            trackers,
            proxies: this.proxyUrls(),
            p2pMinSize: '1MB',
            minFreeSpace: '10MB',
            ...this.options.agentConfig,
          }),
        ),
      );
    }
    this.log(`${this.options.agents} agents up`);
  }

  private async startOrigin(): Promise<void> {
    const dir = join(this.options.dir, 'origin');
    await mkdir(join(dir, 'storage'), { recursive: true });
    const config = join(dir, 'config.yml');
    await writeFile(
      config,
      `version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'storage')}\n  delete:\n    enabled: true\nhttp:\n  addr: 0.0.0.0:${ORIGIN_PORT}\n`,
    );
    const proc = this.origin.spawn('docker-registry', ['serve', config]);
    // The access log is the origin-bytes ledger: keep all of it (a few hundred bytes per request).
    const onData = (c: Buffer) => (this.originLog += c.toString());
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    this.services.push({ name: 'origin', host: this.origin, proc, output: () => this.originLog.slice(-LOG_TAIL) });
    await this.until('origin /v2/', () => {
      if (proc.exitCode !== null) throw new Error(`docker-registry exited:\n${this.originLog}`);
      const code = this.origin.run('curl', [
        '-s',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        '-m',
        '2',
        `http://127.0.0.1:${ORIGIN_PORT}/v2/`,
      ]).stdout;
      return code === '200';
    });
  }

  private async startApp(name: string, host: Host, config: Record<string, unknown>): Promise<void> {
    const app = name.replace(/\d+$/, '');
    const file = join(this.options.dir, `${name}.yaml`);
    await writeFile(file, stringify(config));
    const proc = host.spawn(process.execPath, [BIN, app, '--config', file], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let listening = false;
    // BENCH_LOG_DIR keeps every app's full log (the run's own dir is removed at the end).
    const logFile = process.env.BENCH_LOG_DIR ? createWriteStream(join(process.env.BENCH_LOG_DIR, `${name}.log`)) : undefined;
    const onData = (c: Buffer) => {
      logFile?.write(c);
      out = (out + c.toString()).slice(-LOG_TAIL);
      if (!listening && /listening on /.test(out)) listening = true;
    };
    proc.once('exit', () => logFile?.end());
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    this.services.push({ name, host, proc, output: () => out });
    await this.until(
      `${name} listening`,
      () => {
        if (proc.exitCode !== null) throw new Error(`${name} exited with ${proc.exitCode}:\n${out}`);
        return listening;
      },
      60_000,
    );
  }

  /** Polls `check` every 100 ms until true; throws after `timeoutMs`. */
  private async until(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * Builds a one-layer image of `layerBytes` random bytes and pushes it to the origin from inside
   * the origin's host (its loopback is not capped). Returns the layer descriptor.
   */
  async pushImage(repo: string, tag: string, layerBytes: number): Promise<Descriptor> {
    const layout = new OciLayout(join(this.options.dir, `layout-${repo.replace(/\W/g, '-')}-${tag}`));
    const image = await layout.addImage(tag, [layerBytes]);
    const r = this.origin.run(
      'skopeo',
      [
        'copy',
        '--quiet',
        '--preserve-digests',
        '--dest-tls-verify=false',
        `oci:${layout.dir}:${tag}`,
        `docker://127.0.0.1:${ORIGIN_PORT}/${repo}:${tag}`,
      ],
      { timeoutMs: 300_000 },
    );
    if (r.code !== 0) throw new Error(`push failed: ${r.stderr}`);
    await rm(layout.dir, { recursive: true, force: true });
    return image.layers[0];
  }

  /** Makes the owning proxy fetch, verify and seed a blob (what the first agent's request would do). */
  warmProxy(repo: string, digest: string): void {
    const owner = rendezvousOrder(this.proxyUrls(), digest)[0];
    const proxyHost = [...this.net.hosts.values()].find((h) => owner.includes(`//${h.ip}:`))!;
    const r = proxyHost.run(
      'curl',
      [
        '-s',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        '-m',
        '600',
        '-H',
        `x-p2p-swarm-token: ${SWARM_TOKEN}`,
        `http://127.0.0.1:${PROXY_PORT}/v1/blobs/${digest}/torrent?repo=${repo}`,
      ],
      { timeoutMs: 610_000 },
    );
    if (r.stdout !== '200') throw new Error(`warming ${proxyHost.name} answered ${r.stdout}: ${r.stderr}`);
  }

  /** Waits until the origin's access log (read through a pipe) shows `gets` GETs of `digest` since the mark. */
  async originLogged(digest: string, gets: number): Promise<void> {
    await this.until(`the origin's log line for ${digest}`, () => this.originBlobBytes(digest).gets >= gets, 10_000);
  }

  /**
   * `skopeo copy` of `repo:tag` inside every listed agent's host at once, through the agent
   * (`via: 'agent'`) or straight from the origin (`via: 'origin'`); each result carries its
   * completion time from the common start and whether the layer's sha256 is right.
   */
  async pullAll(
    agents: number[],
    image: { repo: string; tag: string; layer: Descriptor },
    via: 'agent' | 'origin',
    onDone?: (r: PullResult, done: number) => void,
    timeoutMs = 30 * 60_000,
  ): Promise<PullResult[]> {
    const t0 = performance.now();
    let done = 0;
    return Promise.all(
      agents.map(async (i) => {
        const out = join(this.options.dir, 'pulls', `${via}-${image.repo.replace(/\W/g, '-')}-${i}`);
        await rm(out, { recursive: true, force: true });
        await mkdir(join(out, '..'), { recursive: true });
        const src = via === 'agent' ? `127.0.0.1:${AGENT_PORT}` : `${this.origin.ip}:${ORIGIN_PORT}`;
        const proc = this.agentHost(i).spawn('skopeo', [
          'copy',
          '--quiet',
          '--src-tls-verify=false',
          `docker://${src}/${image.repo}:${image.tag}`,
          `dir:${out}`,
        ]);
        let stderr = '';
        proc.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4096)));
        proc.stdout!.resume();
        const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
        const code = await new Promise<number | null>((res) => proc.once('exit', (c) => res(c)));
        clearTimeout(timer);
        const seconds = (performance.now() - t0) / 1000;
        let digestOk = false;
        if (code === 0) {
          digestOk = (await fileDigest(join(out, image.layer.digest.slice(7))).catch(() => '')) === image.layer.digest;
        }
        await rm(out, { recursive: true, force: true });
        const result: PullResult = {
          agent: i,
          ok: code === 0,
          seconds,
          digestOk,
          ...(code === 0 ? {} : { error: stderr.trim() || `exit ${code}` }),
        };
        onDone?.(result, ++done);
        return result;
      }),
    );
  }

  /** Bytes the clients of a running `pullAll` have written so far (what the pulls have received). */
  async clientBytes(): Promise<number> {
    return diskBytes(join(this.options.dir, 'pulls'));
  }

  /** Starts a new origin ledger period (see `originBlobBytes`). */
  markOrigin(): void {
    this.originLogStart = this.originLog.length;
  }

  /** Blob bytes the origin sent since the last `markOrigin()`, by its access log, optionally of one digest. */
  originBlobBytes(digest?: string): { bytes: number; gets: number } {
    const re = /"GET \/v2\/\S+\/blobs\/(sha256:[a-f0-9]{64})\S* HTTP\/1\.1" (\d{3}) (\d+)/g;
    let bytes = 0;
    let gets = 0;
    for (const m of this.originLog.slice(this.originLogStart).matchAll(re)) {
      if (digest && m[1] !== digest) continue;
      if (m[2] !== '200' && m[2] !== '206') continue;
      gets++;
      bytes += Number(m[3]);
    }
    return { bytes, gets };
  }

  /** Bytes that left the origin host's eth0 so far (tc counter: every byte on the wire). */
  originWireBytes(): number {
    const out = this.origin.run('tc', ['-s', 'qdisc', 'show', 'dev', 'eth0']).stdout;
    return Number(/Sent (\d+) bytes/.exec(out)?.[1] ?? NaN);
  }

  /** An app's Prometheus text, fetched from inside its own host. */
  metrics(name: string): string {
    const port = name.startsWith('agent') ? AGENT_PORT : name.startsWith('proxy') ? PROXY_PORT : TRACKER_PORT;
    const r = this.net.host(name).run('curl', ['-s', '-m', '10', `http://127.0.0.1:${port}/metrics`]);
    if (r.code !== 0) throw new Error(`metrics of ${name}: curl exit ${r.code}`);
    return r.stdout;
  }

  /** Peak RSS and CPU seconds of every service process, from /proc. */
  async processStats(): Promise<ProcessStats[]> {
    return Promise.all(this.services.map(async (s) => ({ name: s.name, pid: s.proc.pid!, ...(await procStats(s.proc.pid!)) })));
  }

  /** The tail of a service's log (for failures). */
  output(name: string): string {
    return this.services.find((s) => s.name === name)?.output() ?? '';
  }

  /** Stops every process by PID and removes the hosts. */
  async destroy(): Promise<void> {
    await this.net.destroy();
    this.services = [];
  }
}

/** Sum of a Prometheus metric's samples whose label set contains `labels`. */
export function metricSum(text: string, name: string, labels = ''): number {
  return text
    .split('\n')
    .filter((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(labels))
    .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
}

/** Peak RSS (VmHWM) and CPU seconds (utime + stime) of a live process; zeros once it is gone. */
export async function procStats(pid: number): Promise<{ peakRssBytes: number; cpuSeconds: number }> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
    // Fields after the parenthesised command name: utime and stime are fields 14 and 15 of stat.
    const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
    return { peakRssBytes: hwm, cpuSeconds: (Number(stat[11]) + Number(stat[12])) / CLK_TCK };
  } catch {
    return { peakRssBytes: 0, cpuSeconds: 0 };
  }
}

/** CPU seconds of this process plus its reaped children (skopeo, curl), from /proc/self/stat. */
export async function selfAndChildrenCpu(): Promise<number> {
  const stat = (await readFile('/proc/self/stat', 'utf8')).split(') ')[1].split(' ');
  return (Number(stat[11]) + Number(stat[12]) + Number(stat[13]) + Number(stat[14])) / CLK_TCK;
}

/** Busy and total jiffies of the whole machine (/proc/stat), for the CPU share of a phase. */
export async function machineCpu(): Promise<{ busy: number; total: number }> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = line.reduce((a, b) => a + b, 0);
  const idle = line[3] + (line[4] ?? 0);
  return { busy: total - idle, total };
}

async function diskBytes(dir: string): Promise<number> {
  let sum = 0;
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    if (!e.isFile()) continue;
    const st = await stat(join(e.parentPath, e.name)).catch(() => undefined);
    if (st) sum += st.blocks * 512;
  }
  return sum;
}
