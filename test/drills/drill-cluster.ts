import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { request } from 'undici';
import { startApp, tempDir, type AppProcess } from '../support/app-process.js';
import { OciLayout, pushImage, type BuiltImage } from '../support/oci-image.js';
import { freePort, startOriginRegistry, waitFor, type OriginRegistry } from '../support/origin-registry.js';

export const MB = 1_000_000;
const USER = { username: 'puller', password: 'p2p-secret' };
export const CREDS = `${USER.username}:${USER.password}`;
export const ADMIN = 'drill-admin-token';
export const SWARM = 'drill-swarm-token';
export const AUTH = `Basic ${Buffer.from(CREDS).toString('base64')}`;

export { waitFor };

// Generous: other suites may be loading the 2 cores; a timed-out start is a failed drill, not a hang.
const START_MS = 90_000;

export interface DrillClusterOptions {
  proxies?: number;
  agents?: number;
  /** false: no tracker process, agents and proxies announce to `trackerUrl` (which nobody serves yet). */
  tracker?: boolean;
  /** Layer sizes of image `drill/app:v1`. */
  layers?: number[];
  /** Extra agent config (merged over the defaults). */
  agent?: Record<string, unknown>;
  proxy?: Record<string, unknown>;
}

/**
 * A loopback cluster of real processes for the drills: CNCF origin with Basic auth holding one
 * image, an optional tracker, proxies and agents (p2pMinSize 1MB, short stallTimeout) wired like
 * test/p2p/swarm-pull.e2e.ts. `stop()` kills every process it started by PID and removes its dirs.
 */
export class DrillCluster {
  readonly procs: AppProcess[] = [];
  proxies: AppProcess[] = [];
  agents: AppProcess[] = [];
  tracker: AppProcess | undefined;
  trackerPort = 0;
  origin!: OriginRegistry;
  image!: BuiltImage;
  layout!: OciLayout;
  agentConfigs: Record<string, unknown>[] = [];

  private constructor(readonly dir: string) {}

  static async start(options: DrillClusterOptions = {}): Promise<DrillCluster> {
    const c = new DrillCluster(await tempDir('p2p-drill-'));
    try {
      await c.boot(options);
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  get common() {
    return {
      swarmTokenFile: join(this.dir, 'swarm-token'),
      adminTokenFile: join(this.dir, 'admin-token'),
      p2pPort: 0,
      minFreeSpace: '1MB',
      shutdownGraceSeconds: 2,
    };
  }

  get trackerUrl(): string {
    return `http://127.0.0.1:${this.trackerPort}/announce`;
  }

  private async boot(o: DrillClusterOptions): Promise<void> {
    await writeFile(join(this.dir, 'swarm-token'), `${SWARM}\n`);
    await writeFile(join(this.dir, 'admin-token'), `${ADMIN}\n`);
    this.origin = await startOriginRegistry({ auth: USER });
    this.layout = new OciLayout(join(this.dir, 'layout'));
    this.image = await this.layout.addImage('v1', o.layers ?? [30 * MB, 2_000]);
    await pushImage(this.layout.dir, 'v1', { host: this.origin.host, repo: 'drill/app', creds: CREDS });
    this.trackerPort = await freePort();
    if (o.tracker !== false) await this.startTracker();
    for (let n = 1; n <= (o.proxies ?? 2); n++) {
      const p = await startApp(
        'proxy',
        { ...this.common, registry: this.origin.url, dataDir: join(this.dir, `proxy${n}`), trackers: [this.trackerUrl], ...o.proxy },
        { dir: await this.configDir(`proxy${n}`), timeoutMs: START_MS },
      );
      this.proxies.push(p);
      this.procs.push(p);
    }
    for (let n = 1; n <= (o.agents ?? 2); n++) await this.addAgent(o.agent);
  }

  /** Starts one more agent wired to the cluster (`extra` overrides the defaults). */
  async addAgent(extra: Record<string, unknown> = {}): Promise<AppProcess> {
    const n = this.agentConfigs.length + 1;
    const config = {
      ...this.common,
      registry: this.origin.url,
      dataDir: join(this.dir, `agent${n}`),
      trackers: [this.trackerUrl],
      proxies: this.proxies.map((p) => p.url),
      p2pMinSize: '1MB',
      stallTimeout: 3,
      ...extra,
    };
    this.agentConfigs.push(config);
    const a = await startApp('agent', config, { dir: await this.configDir(`agent${n}`), timeoutMs: START_MS });
    this.agents.push(a);
    this.procs.push(a);
    return a;
  }

  /** Builds another image (random layers) and pushes it to the origin as `drill/<name>:v1`. */
  async addImage(name: string, layers: number[]): Promise<BuiltImage> {
    const layout = new OciLayout(join(this.dir, `layout-${name}`));
    const image = await layout.addImage('v1', layers);
    await pushImage(layout.dir, 'v1', { host: this.origin.host, repo: `drill/${name}`, creds: CREDS });
    await rm(layout.dir, { recursive: true, force: true });
    return image;
  }

  /** Starts the tracker on the cluster's fixed tracker port (again, after a stop). */
  async startTracker(): Promise<AppProcess> {
    this.tracker = await startApp(
      'tracker',
      {
        swarmTokenFile: this.common.swarmTokenFile,
        adminTokenFile: this.common.adminTokenFile,
        shutdownGraceSeconds: 2,
        port: this.trackerPort,
        announceRate: 0,
      },
      { dir: this.dir, timeoutMs: START_MS },
    );
    this.procs.push(this.tracker);
    return this.tracker;
  }

  /** Restarts agent `i` with its original config (same data dir, fresh port). */
  async restartAgent(i: number): Promise<AppProcess> {
    const a = await startApp('agent', this.agentConfigs[i], { dir: await this.configDir(`agent${i + 1}`), timeoutMs: START_MS });
    this.agents[i] = a;
    this.procs.push(a);
    return a;
  }

  private async configDir(name: string): Promise<string> {
    const d = join(this.dir, 'config', name);
    await mkdir(d, { recursive: true });
    return d;
  }

  agentDir(i: number): string {
    return this.agentConfigs[i].dataDir as string;
  }

  async stop(): Promise<void> {
    // A drill may have frozen a process (SIGSTOP): thaw the live ones so SIGTERM can land.
    for (const p of this.procs) if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGCONT');
    await Promise.all(this.procs.map((p) => p.stop()));
    await this.origin?.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Sum of a Prometheus metric's samples whose label text includes `labels`. */
export function sample(text: string, name: string, labels = ''): number {
  return text
    .split('\n')
    .filter((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(labels))
    .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
}

export async function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string; headers: Record<string, unknown> }> {
  const res = await request(url, { headers });
  return { status: res.statusCode, text: await res.body.text(), headers: res.headers };
}

export async function metrics(app: AppProcess): Promise<string> {
  return (await get(`${app.url}/metrics`)).text;
}

/** Streams a blob through an agent and returns its sha256 and length. */
export async function pullBlob(
  agent: AppProcess,
  digest: string,
  repo = 'drill/app',
): Promise<{ status: number; digest: string; bytes: number }> {
  let res;
  try {
    res = await request(`${agent.url}/v2/${repo}/blobs/${digest}`, { headers: { authorization: AUTH } });
  } catch {
    // Connection cut before any response: what a failing blob stream looks like to a client.
    return { status: 0, digest: 'aborted', bytes: 0 };
  }
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    for await (const chunk of res.body) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
  } catch {
    return { status: res.statusCode, digest: 'aborted', bytes };
  }
  return { status: res.statusCode, digest: `sha256:${hash.digest('hex')}`, bytes };
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/**
 * The cache invariant: every file under `blobs/sha256/` is named by the sha256 of its bytes.
 * Returns the verified names and the count of bytes checked; throws on a corrupt file.
 */
export async function checkCache(dataDir: string): Promise<{ blobs: string[]; bytes: number; tmpFiles: string[] }> {
  const blobDir = join(dataDir, 'blobs', 'sha256');
  const names = await readdir(blobDir).catch(() => [] as string[]);
  let bytes = 0;
  for (const name of names) {
    const actual = await sha256File(join(blobDir, name));
    if (actual !== name) throw new Error(`corrupt cache file ${name} (sha256 ${actual})`);
    bytes += (await stat(join(blobDir, name))).size;
  }
  const tmpFiles = await listFiles(join(dataDir, 'tmp'));
  return { blobs: names.sort(), bytes, tmpFiles };
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (e.isDirectory()) out.push(...(await listFiles(join(dir, e.name))));
    else out.push(join(dir, e.name));
  }
  return out;
}

/** VmRSS of a process in bytes. */
export async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/** Open file descriptors of a process that point at regular files under `under`. */
export async function openFiles(pid: number, under: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    if (target.startsWith(under)) out.push(target);
  }
  return out;
}

/** Torrents an app lists on /admin/torrents. */
export async function torrents(app: AppProcess): Promise<{ name: string; state: string; path?: string }[]> {
  const res = await get(`${app.url}/admin/torrents`, { authorization: `Bearer ${ADMIN}` });
  return (JSON.parse(res.text) as { torrents: { name: string; state: string; path?: string }[] }).torrents;
}
