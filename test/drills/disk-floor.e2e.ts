import { spawnSync } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkCache, DrillCluster, get, MB, metrics, pullBlob, sample, waitFor } from './drill-cluster.js';

const TMPFS_BYTES = 64 * 2 ** 20;

/**
 * The disk-safe floor given as a percentage of the filesystem (the default form, "20%"), on a
 * 64 MiB tmpfs so the arithmetic is exact: the floor in bytes, readiness, the metrics an operator
 * alerts on, and a blob that would cross the floor passing through uncached.
 */
describe('free-space floor as a percentage of the data dir filesystem (64 MiB tmpfs)', () => {
  let c: DrillCluster;
  let mnt: string;
  let mounted = false;

  beforeAll(async () => {
    c = await DrillCluster.start({ proxies: 0, agents: 0, layers: [12 * MB, 30 * MB, 45 * MB] });
    mnt = join(c.dir, 'agent-disk');
    await mkdir(mnt);
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_BYTES}`, 'tmpfs', mnt]);
    expect(m.status, m.stderr.toString()).toBe(0);
    mounted = true;
    // The data dir does not exist yet: the percentage resolves against the filesystem it will be on.
    await c.addAgent({ dataDir: join(mnt, 'data'), minFreeSpace: '40%', cacheMaxBytes: '90%' });
  }, 120_000);

  afterAll(async () => {
    await c?.stop().catch(() => undefined);
    if (mounted) spawnSync('umount', [mnt]);
    if (c) await rm(c.dir, { recursive: true, force: true });
  });

  it('resolves 40 % to bytes of the filesystem, caches below it, passes through what would cross it, and says so in readyz and metrics', async () => {
    const agent = c.agents[0];
    const dataDir = join(mnt, 'data');
    const [small, big, huge] = c.image.layers;
    const floor = Math.round(0.4 * TMPFS_BYTES);
    let m = await metrics(agent);
    expect(sample(m, 'p2p_data_dir_min_free_bytes')).toBe(floor);
    expect(sample(m, 'p2p_ready', 'check="dataDir"')).toBe(1);

    // 64 MiB free, floor 26.8 MB: the 12 MB layer fits and is cached.
    expect(await pullBlob(agent, small.digest)).toEqual({ status: 200, digest: small.digest, bytes: small.size });
    expect((await checkCache(dataDir)).blobs).toContain(small.digest.slice(7));
    // About 55 MB free: the 30 MB layer would leave less than the floor, so the least recently used
    // blob makes room (the cache keeps the floor by evicting its own files first).
    expect(await pullBlob(agent, big.digest)).toEqual({ status: 200, digest: big.digest, bytes: big.size });
    expect((await checkCache(dataDir)).blobs).toEqual([big.digest.slice(7)]);
    // 45 MB can never fit above a 26.8 MB floor on 67.1 MB: served from the origin, not stored, and
    // the cached 30 MB blob is not thrown away for nothing.
    expect(await pullBlob(agent, huge.digest)).toEqual({ status: 200, digest: huge.digest, bytes: huge.size });
    expect((await checkCache(dataDir)).blobs).toEqual([big.digest.slice(7)]);
    m = await metrics(agent);
    expect(sample(m, 'p2p_blob_uncached_total')).toBe(1);
    expect(agent.output()).toContain('serving it from origin uncached');

    // Fill the disk past the floor: readiness fails naming it, the alert's expression holds.
    await writeFile(join(mnt, 'filler'), Buffer.alloc(20 * MB));
    await waitFor(async () => (await get(`${agent.url}/readyz`)).status === 503, 15_000, 'readyz to fail');
    expect((await get(`${agent.url}/readyz`)).text).toMatch(/below minFreeSpace/);
    // (The gauge reuses one evaluation of the checks for 2 s.)
    await waitFor(async () => sample(await metrics(agent), 'p2p_ready', 'check="dataDir"') === 0, 15_000, 'p2p_ready 0');
    m = await metrics(agent);
    expect(sample(m, 'p2p_data_dir_free_bytes')).toBeLessThan(sample(m, 'p2p_data_dir_min_free_bytes'));
    // The cached blob is still served (reads need no room).
    expect(await pullBlob(agent, big.digest)).toEqual({ status: 200, digest: big.digest, bytes: big.size });
  }, 120_000);
});
