import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';

/** One emulated host: its own network namespace with `eth0` on a shared bridge. */
export interface HostSpec {
  name: string;
  /** Upload cap in bytes/s (egress of the host's eth0); undefined = uncapped. */
  uploadBytesPerSec?: number;
  /** Download cap in bytes/s (egress of the bridge-side veth towards the host). */
  downloadBytesPerSec?: number;
}

export interface Host {
  name: string;
  /** Network namespace name (for `ip netns exec`). */
  ns: string;
  /** Address on the test network, 10.77.x.y. */
  ip: string;
  /** Starts a long-running command inside the host; it is killed by `destroy()`. */
  spawn(command: string, args: string[], options?: SpawnOptions): ChildProcess;
  /** Runs a command to completion inside the host. */
  run(
    command: string,
    args: string[],
    options?: { timeoutMs?: number; input?: string },
  ): { code: number | null; stdout: string; stderr: string };
}

const SUBNET = '10.77.0.0/16';

/**
 * N hosts as network namespaces on one machine, for multi-host tests and benchmarks.
 *
 * Safety: test traffic must never leave the machine. A blackhole route for 10.77.0.0/16 is added
 * in the root namespace first, so a slip (a root-namespace process dialling a host address) fails
 * locally; the bridge lives in its own namespace, so the root namespace has no interface on the
 * test network at all. Talk to hosts only from inside them (`host.spawn` / `host.run`).
 * Everything started through a host is killed by PID on `destroy()`.
 */
export class NetnsCluster {
  private readonly children = new Set<ChildProcess>();
  private readonly namespaces: string[] = [];
  private addedBlackhole = false;
  readonly hosts = new Map<string, Host>();

  /** True when this cluster added the root-namespace blackhole route (and so removes it on destroy). */
  get ownsBlackholeRoute(): boolean {
    return this.addedBlackhole;
  }

  private constructor(private readonly prefix: string) {}

  /** Creates the bridge and hosts; tears down what it made if any step fails. */
  static async create(specs: HostSpec[], prefix = `p2p${process.pid % 100000}`): Promise<NetnsCluster> {
    if (process.getuid?.() !== 0) {
      throw new Error('the multi-host harness needs root (network namespaces, veth, tc): run as root');
    }
    if (specs.length > 250 * 200) throw new Error('too many hosts');
    const cluster = new NetnsCluster(prefix);
    try {
      cluster.setUp(specs);
    } catch (err) {
      await cluster.destroy();
      throw err;
    }
    return cluster;
  }

  host(name: string): Host {
    const host = this.hosts.get(name);
    if (!host) throw new Error(`no host ${name}`);
    return host;
  }

  private setUp(specs: HostSpec[]): void {
    if (!ipOk(['route', 'show', SUBNET]).includes('blackhole')) {
      ip(['route', 'add', 'blackhole', SUBNET]);
      this.addedBlackhole = true;
    }
    const br = `${this.prefix}br`;
    this.addNs(br);
    ip(['-n', br, 'link', 'add', 'br0', 'type', 'bridge']);
    ip(['-n', br, 'link', 'set', 'br0', 'up']);
    specs.forEach((spec, index) => this.addHost(spec, index + 1, br));
  }

  private addHost(spec: HostSpec, n: number, br: string): void {
    const ns = `${this.prefix}h${n}`;
    // veth names are short-lived in the root namespace and limited to 15 characters.
    const outer = `${this.prefix}a${n}`.slice(-15);
    const inner = `${this.prefix}b${n}`.slice(-15);
    const addr = `10.77.${Math.floor(n / 200)}.${(n % 200) + 1}`;
    this.addNs(ns);
    ip(['link', 'add', outer, 'type', 'veth', 'peer', 'name', inner]);
    ip(['link', 'set', outer, 'netns', br]);
    ip(['link', 'set', inner, 'netns', ns]);
    ip(['-n', ns, 'link', 'set', inner, 'name', 'eth0']);
    ip(['-n', ns, 'addr', 'add', `${addr}/16`, 'dev', 'eth0']);
    ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
    ip(['-n', br, 'link', 'set', outer, 'master', 'br0']);
    ip(['-n', br, 'link', 'set', outer, 'up']);
    if (spec.uploadBytesPerSec) tbf(ns, 'eth0', spec.uploadBytesPerSec);
    if (spec.downloadBytesPerSec) tbf(br, outer, spec.downloadBytesPerSec);

    const host: Host = {
      name: spec.name,
      ns,
      ip: addr,
      spawn: (command, args, options = {}) => {
        const child = spawn('ip', ['netns', 'exec', ns, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options });
        this.children.add(child);
        child.on('exit', () => this.children.delete(child));
        return child;
      },
      run: (command, args, options = {}) => {
        const r = spawnSync('ip', ['netns', 'exec', ns, command, ...args], {
          encoding: 'utf8',
          timeout: options.timeoutMs ?? 60_000,
          input: options.input,
          maxBuffer: 64 * 1024 * 1024,
        });
        return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
      },
    };
    this.hosts.set(spec.name, host);
  }

  private addNs(name: string): void {
    ip(['netns', 'add', name]);
    this.namespaces.push(name);
    ip(['-n', name, 'link', 'set', 'lo', 'up']);
  }

  /** Kills what it started (SIGTERM, then SIGKILL after 5 s), deletes the namespaces and the route. */
  async destroy(): Promise<void> {
    const alive = [...this.children].filter((c) => c.exitCode === null && c.signalCode === null);
    await Promise.all(
      alive.map(
        (child) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
            child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
    for (const ns of this.namespaces.reverse()) ipOk(['netns', 'del', ns]);
    this.namespaces.length = 0;
    if (this.addedBlackhole) ipOk(['route', 'del', 'blackhole', SUBNET]);
    this.addedBlackhole = false;
  }
}

/** A token-bucket cap on egress of `dev` in namespace `ns`, in bytes/s. */
function tbf(ns: string, dev: string, bytesPerSec: number): void {
  const bits = Math.round(bytesPerSec * 8);
  // burst ≈ 20 ms of traffic (≥ 32 KiB) keeps short-term rates close to the cap.
  const burst = Math.max(32 * 1024, Math.round(bytesPerSec / 50));
  ip(['-n', ns, 'link', 'set', dev, 'txqueuelen', '1000']);
  // Queue ≤ 20 ms: tbf queues in one FIFO (this kernel has no fq_codel to put under it), so with
  // 100 ms a host whose upload is saturated (a proxy relaying, an agent seeding) held the ACKs of
  // its own downloads 100 ms behind its bulk data — measured: the proxy's origin fetch fell from
  // 10 to ~1 MB/s (RTT 110 ms) while it relayed. Real hosts' fair-queueing qdiscs let ACKs pass.
  spawnChecked('ip', [
    'netns',
    'exec',
    ns,
    'tc',
    'qdisc',
    'add',
    'dev',
    dev,
    'root',
    'tbf',
    'rate',
    `${bits}bit`,
    'burst',
    `${burst}`,
    'latency',
    '20ms',
  ]);
}

function ip(args: string[]): string {
  return spawnChecked('ip', args);
}

function ipOk(args: string[]): string {
  return spawnSync('ip', args, { encoding: 'utf8' }).stdout ?? '';
}

function spawnChecked(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error?.message}`);
  return r.stdout;
}
