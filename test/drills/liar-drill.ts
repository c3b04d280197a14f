import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { ROOT } from '../support/app-process.js';
import { AUTH, checkCache, DrillCluster, MB, metrics, pullBlob, sample, SWARM, waitFor } from './drill-cluster.js';

export interface LiarResult {
  pulled: { status: number; digest: string; bytes: number };
  digest: string;
  size: number;
  liarUploaded: number;
  swarmBytes: number;
  originBytes: number;
  cacheBytes: number;
  cached: boolean;
  /** Connections the agent still has to the liar's port after the pull. */
  liarStillConnected: boolean;
}

/**
 * Drill 5's scenario: a cluster (slow honest proxy, one agent) plus a liar process that seeds random
 * bytes under the real torrent, announced to the tracker with the swarm token; the agent then pulls.
 */
export class LiarDrill {
  c!: DrillCluster;
  private evil: ChildProcess | undefined;
  private evilOut = '';
  private liarUploaded = 0;

  async start(): Promise<void> {
    // The honest seed (proxy) is slow, the liar is fast and unlimited: the agent will ask it for a lot.
    this.c = await DrillCluster.start({
      proxies: 1,
      agents: 1,
      layers: [20 * MB],
      proxy: { uploadRate: '3MB' },
      agent: { stallTimeout: 4 },
    });
  }

  async stop(): Promise<void> {
    const evil = this.evil;
    if (evil && evil.exitCode === null && evil.signalCode === null) {
      const exited = new Promise((r) => evil.once('exit', r));
      evil.kill('SIGTERM');
      await exited;
    }
    await this.c?.stop();
  }

  async run(): Promise<LiarResult> {
    const c = this.c;
    const layer = c.image.layers[0];
    const proxy = c.proxies[0];
    const agent = c.agents[0];
    // The liar gets the real torrent the way any cluster member would (swarm token + credentials).
    const res = await request(`${proxy.url}/v1/blobs/${layer.digest}/torrent?repo=drill/app`, {
      headers: { 'x-p2p-swarm-token': SWARM, authorization: AUTH },
    });
    if (res.statusCode !== 200) throw new Error(`torrent API answered ${res.statusCode}`);
    const dir = join(c.dir, 'evil');
    await mkdir(dir);
    await writeFile(join(dir, 'blob.torrent'), Buffer.from(await res.body.arrayBuffer()));
    const evil = spawn(
      process.execPath,
      [
        join(ROOT, 'test/drills/malicious-peer.mjs'),
        JSON.stringify({ metainfo: join(dir, 'blob.torrent'), dir, trackers: [c.trackerUrl], token: SWARM }),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.evil = evil;
    evil.stdout.on('data', (d: Buffer) => {
      this.evilOut += d.toString();
      for (const m of this.evilOut.matchAll(/"event":"uploaded","bytes":(\d+)/g)) this.liarUploaded = Number(m[1]);
      if (this.evilOut.length > 100_000) this.evilOut = this.evilOut.slice(-1000);
    });
    evil.stderr.on('data', (d: Buffer) => (this.evilOut += d.toString()));
    await waitFor(() => this.evilOut.includes('"seeding"'), 30_000, 'malicious peer seeding');
    const liarPort = Number(/"seeding","port":(\d+)/.exec(this.evilOut)![1]);
    await waitFor(async () => sample(await metrics(c.tracker!), 'p2p_tracker_peers') >= 2, 30_000, 'liar and proxy on the tracker');

    const pulled = await pullBlob(agent, layer.digest);
    const cache = await checkCache(c.agentDir(0));
    const m = await metrics(agent);
    const ss = spawnSync('ss', ['-Htn', 'state', 'established', `dport = :${liarPort}`], { encoding: 'utf8' });
    return {
      pulled,
      digest: layer.digest,
      size: layer.size,
      liarUploaded: this.liarUploaded,
      swarmBytes: sample(m, 'p2p_blob_bytes_fetched_total', 'fetcher="swarm"'),
      originBytes: sample(m, 'p2p_blob_bytes_fetched_total', 'fetcher="origin"'),
      cacheBytes: cache.bytes,
      cached: cache.blobs.includes(layer.digest.slice(7)),
      liarStillConnected: ss.stdout.trim().length > 0,
    };
  }
}
