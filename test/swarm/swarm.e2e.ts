import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, tempDir, type AppProcess } from '../support/app-process.js';
import { rateBetween, startPeer, type PeerProcess } from './swarm-peer-process.js';

const SWARM_TOKEN = 'swarm-token-for-swarm-tests';
const SIZE = 64 * 1024 * 1024;
const MB = 1e6;

/** A loopback port nothing listens on (bound, then released). */
async function deadPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function metric(base: string, name: string, ...labels: string[]): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(`p2p_${name}{`) && labels.every((f) => l.includes(f)))
    .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
}

function sumSource(text: string, source: string): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith('p2p_blob_bytes_received_total{') && l.includes(`source="${source}"`))
    .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
}

describe('SwarmClient over the tracker app (separate processes)', () => {
  let dir: string;
  let tracker: AppProcess;
  let seeder: PeerProcess;
  let seederPort: number;
  let hex: string;
  let announce: string;
  const peers: PeerProcess[] = [];

  const peer = (config: Record<string, unknown>) => {
    const p = startPeer(config);
    peers.push(p);
    return p;
  };
  const downloader = async (name: string, config: Record<string, unknown>) => {
    const dl = join(dir, name);
    await mkdir(dl);
    return peer({ mode: 'download', metainfo: join(dir, 'blob.torrent'), dir: dl, trackers: [announce], token: SWARM_TOKEN, ...config });
  };

  beforeAll(async () => {
    dir = await tempDir('p2p-swarm-');
    const data = randomBytes(SIZE);
    hex = createHash('sha256').update(data).digest('hex');
    await mkdir(join(dir, 'seed'));
    await writeFile(join(dir, 'seed', hex), data);
    await writeFile(join(dir, 'swarm-token'), SWARM_TOKEN);
    tracker = await startApp('tracker', { swarmTokenFile: join(dir, 'swarm-token'), announceInterval: '2s' }, { dir });
    announce = `${tracker.url}/announce`;
    seeder = peer({
      mode: 'seed',
      file: join(dir, 'seed', hex),
      metainfoOut: join(dir, 'blob.torrent'),
      trackers: [announce],
      token: SWARM_TOKEN,
    });
    seederPort = (await seeder.waitFor('seeding')).port as number;
  });

  afterAll(async () => {
    await Promise.all(peers.map((p) => p.stop()));
    await tracker?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('two clients find the seeder through the tracker, stream before completion, and get identical bytes', async () => {
    // One is throttled so its stream demonstrably starts long before its download completes.
    const slow = await downloader('a', { downloadRate: 16 * MB, seedAfter: true });
    const fast = await downloader('b', {});
    const [slowFirst, slowDone, fastDone] = await Promise.all([slow.waitFor('first-byte'), slow.waitFor('done'), fast.waitFor('done')]);
    expect(slowFirst.verifiedBytes as number).toBeLessThan(SIZE / 2);
    expect(slowDone.at - slowFirst.at).toBeGreaterThan(1000);
    for (const done of [slowDone, fastDone]) {
      expect(done.sha256).toBe(hex);
      expect(done.streamed).toBe(SIZE);
      const onDisk = createHash('sha256')
        .update(await readFile(done.path as string))
        .digest('hex');
      expect(onDisk).toBe(hex);
    }
    // Bytes by source: the seeder runs as a proxy (peer id prefix), so the unthrottled client's
    // bytes are counted as `proxy` and/or `peer` (from the other downloader), adding up to the blob.
    fast.send({ cmd: 'metrics' });
    const text = (await fast.waitFor('metrics')).text as string;
    const bytes = (source: string) => sumSource(text, source);
    expect(bytes('proxy')).toBeGreaterThan(0);
    expect(bytes('proxy') + bytes('peer')).toBeGreaterThanOrEqual(SIZE);
    // After completion the owner seeds the finished file in place (download torrent replaced).
    const seeding = await slow.waitFor('seeding');
    expect(seeding.torrents).toEqual(['seeding']);
    expect(await metric(tracker.url, 'tracker_requests_total', 'action="announce"', 'result="ok"')).toBeGreaterThanOrEqual(3);
  });

  it('downloads from a direct peer with every tracker down', async () => {
    const dead = `http://127.0.0.1:${await deadPort()}/announce`;
    const c = await downloader('c', { trackers: [dead], peers: [`127.0.0.1:${seederPort}`] });
    const done = await c.waitFor('done');
    expect(done.sha256).toBe(hex);
  });

  it('announces to a tracker that was down at start as soon as it is up (no 30 min wait)', async () => {
    const port = await deadPort();
    const f = await downloader('f', { trackers: [`http://127.0.0.1:${port}/announce`] });
    await f.waitFor('downloading');
    const late = await startApp('tracker', { port, swarmTokenFile: join(dir, 'swarm-token') }, { dir });
    try {
      const deadline = Date.now() + 30_000;
      while ((await metric(late.url, 'tracker_peers')) < 1) {
        if (Date.now() > deadline) throw new Error('the client never announced to the late tracker');
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(await metric(late.url, 'tracker_requests_total', 'action="announce"', 'result="ok"')).toBeGreaterThanOrEqual(1);
    } finally {
      await late.stop();
      await f.stop();
    }
  });

  it('follows a download-rate change live', async () => {
    const d = await downloader('d', { trackers: [], peers: [`127.0.0.1:${seederPort}`], downloadRate: 3 * MB });
    const first = await d.waitFor('first-byte');
    // Measure 2 s at 3 MB/s, then raise the limit to 12 MB/s and measure again after 0.5 s.
    await d.waitFor('progress', (e) => e.at > first.at + 2500, 10_000);
    const before = rateBetween(d.events, first.at + 500, first.at + 2500);
    const changedAt = Date.now();
    d.send({ cmd: 'rate', name: 'downloadRate', rate: 12 * MB });
    await d.waitFor('progress', (e) => e.at > changedAt + 2500, 10_000);
    const after = rateBetween(d.events, changedAt + 500, changedAt + 2500);
    // The limit applies at all, and its raise reaches the transfer in flight: bounds a slow runner
    // cannot break. The bands (3 MB/s ±40 %, then 2.5× within 0.5 s) are the drill's
    // (test/drills/rate-bands.drill.ts).
    expect(before).toBeGreaterThan(0);
    expect(before).toBeLessThan(3 * MB * 2);
    expect(after).toBeGreaterThan(before);
    expect((await d.waitFor('done')).sha256).toBe(hex);
  });

  it('gets no peers from the tracker with a wrong token (refused and counted)', async () => {
    const refusedBefore = await metric(tracker.url, 'tracker_requests_total', 'action="announce"', 'result="refused_token"');
    const e = await downloader('e', { token: 'wrong-token', progressEveryMs: 200 });
    await e.waitFor('downloading');
    const deadline = Date.now() + 10_000;
    while ((await metric(tracker.url, 'tracker_requests_total', 'action="announce"', 'result="refused_token"')) <= refusedBefore) {
      if (Date.now() > deadline) throw new Error('tracker never counted the refused announce');
      await new Promise((r) => setTimeout(r, 100));
    }
    const settled = Date.now() + 500;
    const progress = await e.waitFor('progress', (p) => p.at > settled);
    expect(progress.peers).toBe(0);
    expect(progress.bytes).toBe(0);
  });
});
