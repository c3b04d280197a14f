import { mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { startApp, tempDir, type AppProcess } from '../support/app-process.js';
import { OciLayout, pushImage, type BuiltImage } from '../support/oci-image.js';
import { startOriginRegistry, waitFor, type OriginRegistry } from '../support/origin-registry.js';
import { metric } from '../registry/helpers.js';

const TOKEN = 'admin-token-for-reload-tests';
const MB = 1_000_000;

/**
 * A ConfigMap volume as kubelet's AtomicWriter keeps it: `<app>.yaml -> ..data/<app>.yaml`,
 * `..data -> ..<timestamp>`; an update writes a new timestamped dir, points `..data_tmp` at it,
 * renames `..data_tmp` over `..data` (atomic) and removes the old dir. The file's own inode never
 * changes, which is why watching the file itself misses every update.
 */
class ConfigMapVolume {
  private generation = 0;
  constructor(
    readonly dir: string,
    readonly name: string,
  ) {}

  async init(config: Record<string, unknown>): Promise<void> {
    const ts = await this.writeGeneration(stringify(config));
    await symlink(ts, join(this.dir, '..data'));
    await symlink(`..data/${this.name}`, join(this.dir, this.name));
  }

  async update(text: string): Promise<void> {
    const old = this.stamp(this.generation);
    const ts = await this.writeGeneration(text);
    await symlink(ts, join(this.dir, '..data_tmp'));
    await rename(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
    await rm(join(this.dir, old), { recursive: true });
  }

  private stamp(n: number): string {
    return `..2026_11_30_06_00_${String(n).padStart(2, '0')}.${String(100000000 + n)}`;
  }

  private async writeGeneration(text: string): Promise<string> {
    const ts = this.stamp(++this.generation);
    await mkdir(join(this.dir, ts));
    await writeFile(join(this.dir, ts, this.name), text);
    return ts;
  }
}

async function admin(url: string, method: 'GET' | 'PATCH' = 'GET', body?: unknown): Promise<Record<string, unknown>> {
  const res = await request(`${url}/admin/rate`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.body.json()) as Record<string, unknown>;
  expect(res.statusCode).toBe(200);
  return json;
}

async function reloads(url: string, result: string): Promise<number> {
  const res = await request(`${url}/metrics`);
  return metric(await res.body.text(), 'p2p_config_reloads_total', `result="${result}"`);
}

/** Counts a response body's bytes as they arrive, to measure the rate over chosen windows. */
class RateMeter {
  readonly samples: { t: number; bytes: number }[] = [{ t: performance.now(), bytes: 0 }];
  private total = 0;
  done: Promise<void>;
  constructor(body: AsyncIterable<Uint8Array>) {
    this.done = (async () => {
      try {
        for await (const chunk of body) {
          this.total += chunk.length;
          this.samples.push({ t: performance.now(), bytes: this.total });
        }
      } catch {
        // aborted at the end of the test
      }
    })();
  }
  get bytes(): number {
    return this.total;
  }
  private at(t: number): number {
    let bytes = 0;
    for (const s of this.samples) if (s.t <= t) bytes = s.bytes;
    return bytes;
  }
  /** Bytes/s over [from, from + ms], once the window is over (bounded wait on the clock, not on a condition). */
  async rateOver(from: number, ms: number): Promise<number> {
    await waitFor(() => performance.now() >= from + ms, ms + 1000, 'the measuring window');
    return ((this.at(from + ms) - this.at(from)) / ms) * 1000;
  }
}

describe('config file edits apply live (kubelet ConfigMap swap, real processes)', () => {
  let origin: OriginRegistry;
  let image: BuiltImage;
  let dir: string;
  const procs: AppProcess[] = [];
  const cleanups: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    dir = await tempDir('p2p-reload-');
    await writeFile(join(dir, 'admin-token'), `${TOKEN}\n`);
    origin = await startOriginRegistry();
    cleanups.push(() => origin.stop());
    const layout = new OciLayout(join(dir, 'layout'));
    image = await layout.addImage('v1', [64 * 2 ** 20]);
    await pushImage(layout.dir, 'v1', { host: origin.host, repo: 'lib/big' });
  });

  afterAll(async () => {
    for (const p of procs) await p.stop();
    for (const c of cleanups) await c();
  });

  it('agent: a downloadRate edit changes the rate of a pull in flight within seconds, without a restart; broken edits change nothing', async () => {
    const volumeDir = join(dir, 'agent-configmap');
    await mkdir(volumeDir);
    const volume = new ConfigMapVolume(volumeDir, 'agent.yaml');
    // Every key startApp would add is written here too, so rewriting the file changes only what a test means to.
    const config = {
      port: 0,
      host: '127.0.0.1',
      logFormat: 'json',
      p2pPort: 0,
      registry: origin.url,
      dataDir: join(dir, 'agent-data'),
      minFreeSpace: '1MB',
      adminTokenFile: join(dir, 'admin-token'),
      downloadRate: '2MB',
    };
    await volume.init(config);
    // startApp writes agent.yaml through the symlink into the current generation (same content).
    const agent = await startApp('agent', config, { dir: volumeDir, configName: 'agent.yaml' });
    procs.push(agent);
    const pid = agent.proc.pid;
    expect(await admin(agent.url)).toMatchObject({ downloadRate: 2 * MB, source: { downloadRate: 'file' } });

    const layer = image.layers[0];
    const abort = new AbortController();
    const res = await request(`${agent.url}/v2/lib/big/blobs/${layer.digest}`, { signal: abort.signal });
    expect(res.statusCode).toBe(200);
    const meter = new RateMeter(res.body);
    await waitFor(() => meter.bytes >= MB, 30_000, 'the first MB');
    const before = await meter.rateOver(performance.now(), 3000);

    const edited = performance.now();
    await volume.update(stringify({ ...config, downloadRate: '8MB' }));
    await waitFor(async () => (await admin(agent.url)).downloadRate === 8 * MB, 15_000, 'the agent to apply the edit');
    const seenAfterMs = performance.now() - edited;
    const after = await meter.rateOver(performance.now(), 3000);
    console.log(
      `downloadRate 2MB → 8MB by a ConfigMap swap: applied after ${seenAfterMs.toFixed(0)} ms; rate ${(before / MB).toFixed(2)} → ${(after / MB).toFixed(2)} MB/s`,
    );
    expect(before).toBeLessThan(3 * MB);
    expect(after).toBeGreaterThan(2 * before);
    expect(seenAfterMs).toBeLessThan(5000); // directory watch: at once; the 2 s poll is the fallback
    expect(meter.bytes).toBeLessThan(layer.size); // the edit reached a transfer in flight

    const view = await admin(agent.url);
    expect(view).toMatchObject({ downloadRate: 8 * MB, uploadRate: 0, source: { downloadRate: 'file', uploadRate: 'default' } });
    expect(Date.parse((view.updatedAt as Record<string, string>).downloadRate)).toBeGreaterThan(Date.now() - 60_000);
    expect(await reloads(agent.url, 'applied')).toBe(1);

    // Broken edits: bad YAML, then a bad value. Each is logged and ignored; the limits stay.
    const stable = await admin(agent.url);
    const warnings = () => agent.output().match(/changed but is not usable/g)?.length ?? 0;
    await volume.update('downloadRate: [8MB\n');
    await waitFor(() => warnings() === 1, 15_000, 'a warning about the broken YAML');
    expect(agent.output()).toMatch(/not valid YAML/);
    await volume.update(stringify({ ...config, downloadRate: 'fast' }));
    await waitFor(() => warnings() === 2, 15_000, 'a warning about the bad value');
    expect(await admin(agent.url)).toEqual(stable);
    expect(await reloads(agent.url, 'rejected')).toBe(2);

    // Same process all along.
    expect(agent.proc.pid).toBe(pid);
    expect(agent.proc.exitCode).toBeNull();
    expect(agent.output().match(/listening on/g)).toHaveLength(1);
    abort.abort();
    await meter.done;
  });

  it('tracker: GET /admin/rate shows the file value and who set it; PATCH and file edits, the later wins; other keys need a restart', async () => {
    const volumeDir = join(dir, 'tracker-configmap');
    await mkdir(volumeDir);
    const volume = new ConfigMapVolume(volumeDir, 'tracker.yaml');
    const config = { port: 0, host: '127.0.0.1', logFormat: 'json', adminTokenFile: join(dir, 'admin-token'), announceRate: 5 };
    await volume.init(config);
    const tracker = await startApp('tracker', config, { dir: volumeDir, configName: 'tracker.yaml' });
    procs.push(tracker);
    expect(await admin(tracker.url)).toMatchObject({ announceRate: 5, source: { announceRate: 'file' } });

    await volume.update(stringify({ ...config, announceRate: 50 }));
    await waitFor(async () => (await admin(tracker.url)).announceRate === 50, 15_000, 'announceRate 50 from the file');
    expect(await admin(tracker.url)).toMatchObject({ announceRate: 50, source: { announceRate: 'file' } });

    // PATCH after the edit wins; an edit that leaves announceRate alone keeps the PATCHed value.
    expect(await admin(tracker.url, 'PATCH', { announceRate: 70 })).toMatchObject({ announceRate: 70, source: { announceRate: 'patch' } });
    await volume.update(stringify({ ...config, announceRate: 50, logLevel: 'debug' }));
    await waitFor(() => /logLevel changed: needs a restart/.test(tracker.output()), 15_000, 'the restart warning');
    expect(await admin(tracker.url)).toMatchObject({ announceRate: 70, source: { announceRate: 'patch' } });
    expect(await reloads(tracker.url, 'restart_needed')).toBe(1);

    // A later edit of announceRate wins over the PATCH.
    await volume.update(stringify({ ...config, announceRate: 90 }));
    await waitFor(async () => (await admin(tracker.url)).announceRate === 90, 15_000, 'announceRate 90 from the file');
    expect(await admin(tracker.url)).toMatchObject({ source: { announceRate: 'file' } });
  });
});
