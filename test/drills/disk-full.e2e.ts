import { spawnSync } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkCache, DrillCluster, get, MB, pullBlob, waitFor } from './drill-cluster.js';

const TMPFS_MB = 64;

describe('drill 6: the agent data disk fills up (64 MB tmpfs)', () => {
  let c: DrillCluster;
  let mnt: string;
  let mounted = false;

  beforeAll(async () => {
    c = await DrillCluster.start({ proxies: 1, agents: 0, layers: [30 * MB] });
    mnt = join(c.dir, 'agent-disk');
    await mkdir(mnt);
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_MB}m`, 'tmpfs', mnt]);
    expect(m.status, m.stderr?.toString()).toBe(0);
    mounted = true;
    await c.addAgent({ dataDir: join(mnt, 'data'), minFreeSpace: '20MB', cacheMaxBytes: 0 });
  }, 120_000);

  afterAll(async () => {
    // The dir removal in stop() trips over the mount point: unmount, then remove again.
    await c?.stop().catch(() => undefined);
    if (mounted) spawnSync('umount', [mnt]);
    if (c) await rm(c.dir, { recursive: true, force: true });
  });

  it('no room → the pull passes through from the origin uncached, /readyz says why, no corrupt file; space freed → recovers', async () => {
    const agent = c.agents[0];
    const layer = c.image.layers[0];
    const dataDir = join(mnt, 'data');
    // Leave 14 MB: below minFreeSpace (20 MB), and the 30 MB layer cannot fit.
    await writeFile(join(mnt, 'filler'), Buffer.alloc(50 * MB));
    await waitFor(async () => (await get(`${agent.url}/readyz`)).status === 503, 15_000, 'readyz to fail');
    const ready = await get(`${agent.url}/readyz`);
    expect(ready.text).toMatch(/free space/);

    const full = await pullBlob(agent, layer.digest);
    // No room to cache it: the blob is passed through from the origin, whole and right (DESIGN: the
    // agent never fails a pull the origin alone would serve), and nothing is written.
    expect(full).toEqual({ status: 200, digest: layer.digest, bytes: layer.size });
    expect(agent.output()).toContain('serving it from origin uncached');
    const after = await checkCache(dataDir);
    expect(after.blobs).not.toContain(layer.digest.slice(7));
    await waitFor(async () => (await checkCache(dataDir)).tmpFiles.length === 0, 10_000, 'temp files removed');
    expect((await get(`${agent.url}/healthz`)).status).toBe(200);
    expect([agent.proc.exitCode, agent.proc.signalCode]).toEqual([null, null]);

    await rm(join(mnt, 'filler'));
    await waitFor(async () => (await get(`${agent.url}/readyz`)).status === 200, 15_000, 'readyz to recover');
    const again = await pullBlob(agent, layer.digest);
    expect(again).toEqual({ status: 200, digest: layer.digest, bytes: layer.size });
    expect((await checkCache(dataDir)).blobs).toContain(layer.digest.slice(7));
    console.log(
      `drill 6: disk full → status ${full.status}, ${full.bytes} B (${full.digest === layer.digest ? 'right digest' : full.digest}); readyz: ${ready.text.slice(0, 160)}; after freeing: cached ${layer.size} B`,
    );
  }, 120_000);
});
