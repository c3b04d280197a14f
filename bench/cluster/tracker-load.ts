import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { startLocalApp } from './local-app.js';
import { metricSum, procStats } from './bench-cluster.js';

export interface TrackerLoadResult {
  swarms: number;
  peersPerSwarm: number;
  announces: number;
  failed: number;
  seconds: number;
  announcesPerSecond: number;
  trackerPeers: number;
  trackerPeakRssBytes: number;
  trackerCpuSeconds: number;
}

/**
 * Announce throughput of the real tracker (bin/p2p tracker, token check on, per-client limit off)
 * over loopback: `swarms` × `peersPerSwarm` distinct peers announce `started` once each,
 * `concurrency` requests in flight. Bounded by the count and by `timeLimitSeconds`.
 */
export async function runTrackerLoad(
  dir: string,
  opts: { swarms: number; peersPerSwarm: number; concurrency: number; timeLimitSeconds: number },
): Promise<TrackerLoadResult> {
  const token = 'bench-swarm-token';
  await writeFile(join(dir, 'tracker-token'), token);
  const tracker = await startLocalApp(
    'tracker',
    dir,
    { swarmTokenFile: join(dir, 'tracker-token'), announceRate: 0, peersCacheLength: opts.peersPerSwarm + 100 },
  );
  const pool = new Agent({ connections: opts.concurrency, pipelining: 1 });
  try {
    const enc = (b: Buffer) => [...b].map((x) => `%${x.toString(16).padStart(2, '0')}`).join('');
    const hashes = Array.from({ length: opts.swarms }, () => enc(randomBytes(20)));
    const total = opts.swarms * opts.peersPerSwarm;
    const deadline = Date.now() + opts.timeLimitSeconds * 1000;
    let next = 0;
    let sent = 0;
    let failed = 0;
    const t0 = performance.now();
    const worker = async () => {
      for (;;) {
        const i = next++;
        if (i >= total || Date.now() > deadline) return;
        const swarm = i % opts.swarms;
        const peer = Math.floor(i / opts.swarms);
        const url = `${tracker.url}/announce?info_hash=${hashes[swarm]}&peer_id=${enc(randomBytes(20))}&port=${10000 + (peer % 50000)}&uploaded=0&downloaded=0&left=1&compact=1&numwant=50&event=started&token=${token}`;
        const res = await request(url, { dispatcher: pool });
        const body = Buffer.from(await res.body.arrayBuffer());
        sent++;
        if (res.statusCode !== 200 || body.includes('failure reason')) failed++;
      }
    };
    await Promise.all(Array.from({ length: opts.concurrency }, worker));
    const seconds = (performance.now() - t0) / 1000;
    const metrics = await (await request(`${tracker.url}/metrics`, { dispatcher: pool })).body.text();
    const stats = await procStats(tracker.proc.pid!);
    return {
      swarms: opts.swarms,
      peersPerSwarm: opts.peersPerSwarm,
      announces: sent,
      failed,
      seconds,
      announcesPerSecond: sent / seconds,
      trackerPeers: metricSum(metrics, 'p2p_tracker_peers'),
      trackerPeakRssBytes: stats.peakRssBytes,
      trackerCpuSeconds: stats.cpuSeconds,
    };
  } finally {
    await tracker.stop();
    await pool.close();
  }
}
