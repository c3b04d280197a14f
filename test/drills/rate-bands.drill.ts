import { createHash, randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TokenBucket } from '#ops';
import { fileDigest, skopeoPull } from '../support/oci-image.js';
import { startApp, tempDir, type AppProcess } from '../support/app-process.js';
import { admin, CREDS, pushLayer, startLoopbackCluster, swarmBytes, until, type LoopbackCluster } from '../p2p/cluster.js';
import { rateBetween, startPeer, type PeerProcess } from '../swarm/swarm-peer-process.js';

/*
 * Rates measured over seconds of real time, within tight bands: they hold on a quiet machine and
 * say little on a shared CI runner, so they run here (`npm run drills`), not in `npm test`. The CI
 * suite keeps a deterministic version of each: token arithmetic on a manual clock
 * (libs/ops/src/throttle/token-bucket.spec.ts), and "the limit applies at all" checks in
 * test/p2p/swarm-faults.e2e.ts and test/swarm/swarm.e2e.ts.
 */

const MB = 1_000_000;

describe('rate bands: the token bucket over real time', () => {
  it('averages the configured rate over a transfer (moved from token-bucket.spec.ts)', async () => {
    const bucket = new TokenBucket(1_000_000, 0.05, 1);
    const start = performance.now();
    for (let i = 0; i < 10; i++) await bucket.take(50_000);
    const elapsed = (performance.now() - start) / 1000;
    // 500 kB at 1 MB/s, minus the initial 50 kB burst: 0.45 s. The CI spec's old loose bounds, then ±10 %.
    expect(elapsed).toBeGreaterThan(0.3);
    expect(elapsed).toBeLessThan(2);
    expect(elapsed).toBeGreaterThan(0.45 * 0.9);
    expect(elapsed).toBeLessThan(0.45 * 1.1);
  });
});

describe('rate bands: PATCH /admin/rate mid-pull (real processes, loopback)', () => {
  let cluster: LoopbackCluster | undefined;
  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
  });

  it('follows PATCH /admin/rate mid-pull: 5 MB/s within 2 s, ±10 % (moved from test/p2p/swarm-faults.e2e.ts)', async () => {
    cluster = await startLoopbackCluster({ proxies: 1, agents: 1, agentConfig: { downloadRate: '20MB' } });
    const c = cluster;
    const layer = await pushLayer(c, 'faults/rate', 100 * MB);
    const out = join(c.dir, 'out-rate');
    const pull = skopeoPull(`127.0.0.1:${c.agents[0].port}/faults/rate:v1`, out, { creds: CREDS });
    expect(await until(async () => (await swarmBytes(c)) > 10 * MB, 60_000)).toBe(true);
    expect((await admin(c.agents[0], 'PATCH', '/admin/rate', { downloadRate: '5MB' })).status).toBe(200);
    const changedAt = Date.now();
    await new Promise((r) => setTimeout(r, 2000));
    const b1 = await swarmBytes(c);
    const t1 = Date.now();
    await new Promise((r) => setTimeout(r, 6000));
    const b2 = await swarmBytes(c);
    const rate = (b2 - b1) / ((Date.now() - t1) / 1000);
    expect(t1 - changedAt).toBeLessThan(2500);
    // Issue 4: the measured rate follows within 2 s, ±10%.
    expect(rate).toBeGreaterThan(4.5 * MB);
    expect(rate).toBeLessThan(5.5 * MB);
    await admin(c.agents[0], 'PATCH', '/admin/rate', { downloadRate: 0 });
    const res = await pull;
    expect(res.ok, res.stderr).toBe(true);
    expect(await fileDigest(join(out, layer.digest.slice(7)))).toBe(layer.digest);
  });
});

describe('rate bands: a swarm client follows a download-rate change live (separate processes)', () => {
  const SWARM_TOKEN = 'swarm-token-for-rate-drill';
  const SIZE = 64 * 1024 * 1024;
  let dir: string;
  let tracker: AppProcess | undefined;
  let hex: string;
  let seederPort: number;
  const peers: PeerProcess[] = [];

  beforeAll(async () => {
    dir = await tempDir('p2p-rate-drill-');
    const data = randomBytes(SIZE);
    hex = createHash('sha256').update(data).digest('hex');
    await mkdir(join(dir, 'seed'));
    await writeFile(join(dir, 'seed', hex), data);
    await writeFile(join(dir, 'swarm-token'), SWARM_TOKEN);
    tracker = await startApp('tracker', { swarmTokenFile: join(dir, 'swarm-token'), announceInterval: '2s' }, { dir });
    const seeder = startPeer({
      mode: 'seed',
      file: join(dir, 'seed', hex),
      metainfoOut: join(dir, 'blob.torrent'),
      trackers: [`${tracker.url}/announce`],
      token: SWARM_TOKEN,
    });
    peers.push(seeder);
    seederPort = (await seeder.waitFor('seeding')).port as number;
  });

  afterAll(async () => {
    await Promise.all(peers.map((p) => p.stop()));
    await tracker?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('3 MB/s ±40 %, then more than 2.5× that within 0.5 s of a raise to 12 MB/s (moved from test/swarm/swarm.e2e.ts)', async () => {
    const dl = join(dir, 'd');
    await mkdir(dl);
    const d = startPeer({
      mode: 'download',
      metainfo: join(dir, 'blob.torrent'),
      dir: dl,
      trackers: [],
      peers: [`127.0.0.1:${seederPort}`],
      token: SWARM_TOKEN,
      downloadRate: 3 * MB,
    });
    peers.push(d);
    const first = await d.waitFor('first-byte');
    // Measure 2 s at 3 MB/s, then raise the limit to 12 MB/s and measure again after 0.5 s.
    await d.waitFor('progress', (e) => e.at > first.at + 2500, 10_000);
    const before = rateBetween(d.events, first.at + 500, first.at + 2500);
    const changedAt = Date.now();
    d.send({ cmd: 'rate', name: 'downloadRate', rate: 12 * MB });
    await d.waitFor('progress', (e) => e.at > changedAt + 2500, 10_000);
    const after = rateBetween(d.events, changedAt + 500, changedAt + 2500);
    expect(before).toBeGreaterThan(3 * MB * 0.6);
    expect(before).toBeLessThan(3 * MB * 1.4);
    expect(after).toBeGreaterThan(before * 2.5);
    expect(after).toBeLessThan(12 * MB * 1.4);
    expect((await d.waitFor('done')).sha256).toBe(hex);
  });
});
