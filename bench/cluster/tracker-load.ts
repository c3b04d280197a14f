import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from 'node:net';
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
  /**
   * The same generator and requests against a Node HTTP server that does no work (a fixed answer
   * of the same size), in the same run: the ceiling this machine and generator allow.
   */
  httpCeilingPerSecond: number;
}

/**
 * Announce throughput of the real tracker (bin/p2p tracker, token check on, per-client limit off)
 * over loopback: `swarms` × `peersPerSwarm` distinct peers announce `started` once each (compact,
 * numwant 50), `concurrency` keep-alive connections. Bounded by the count and by `timeLimitSeconds`.
 */
export async function runTrackerLoad(
  dir: string,
  opts: { swarms: number; peersPerSwarm: number; concurrency: number; timeLimitSeconds: number },
): Promise<TrackerLoadResult> {
  const token = 'bench-swarm-token';
  await writeFile(join(dir, 'tracker-token'), token);
  const tracker = await startLocalApp('tracker', dir, {
    swarmTokenFile: join(dir, 'tracker-token'),
    announceRate: 0,
    peersCacheLength: opts.peersPerSwarm + 100,
  });
  try {
    const enc = (b: Buffer) => [...b].map((x) => `%${x.toString(16).padStart(2, '0')}`).join('');
    const hashes = Array.from({ length: opts.swarms }, () => enc(randomBytes(20)));
    const total = opts.swarms * opts.peersPerSwarm;
    // Every request is built before the clock starts, so the generator's cost per announce is one
    // socket write and one read (undici's per-request overhead capped a plain Node server at ~6.6k/s
    // on this machine; raw sockets reach ~18k/s).
    const requests = Array.from({ length: total }, (_, i) => {
      const swarm = i % opts.swarms;
      const peer = Math.floor(i / opts.swarms);
      const path = `/announce?info_hash=${hashes[swarm]}&peer_id=${enc(randomBytes(20))}&port=${10000 + (peer % 50000)}&uploaded=0&downloaded=0&left=1&compact=1&numwant=50&event=started&token=${token}`;
      return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${tracker.port}\r\n\r\n`);
    });
    const httpCeilingPerSecond = await zeroWorkCeiling(requests, opts.concurrency, opts.timeLimitSeconds);
    const t0 = performance.now();
    const { sent, failed } = await announceLoad(tracker.port, requests, opts.concurrency, Date.now() + opts.timeLimitSeconds * 1000);
    const seconds = (performance.now() - t0) / 1000;
    const metrics = await (await fetch(`${tracker.url}/metrics`)).text();
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
      httpCeilingPerSecond,
    };
  } finally {
    await tracker.stop();
  }
}

/** Announce-sized fixed answers from a bare `node:http` server in a child process, under the same load. */
async function zeroWorkCeiling(requests: Buffer[], concurrency: number, timeLimitSeconds: number): Promise<number> {
  const code = `const b=Buffer.alloc(330,48);const s=require('http').createServer((q,r)=>{r.writeHead(200,['content-type','text/plain','content-length','330']);r.end(b)});s.listen(0,'127.0.0.1',()=>console.log(s.address().port))`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.once('data', (c: Buffer) => resolve(Number(c.toString().trim())));
      child.once('exit', () => reject(new Error('zero-work server exited')));
    });
    const sample = requests.slice(0, Math.min(requests.length, 50_000));
    const t0 = performance.now();
    const { sent } = await announceLoad(port, sample, concurrency, Date.now() + timeLimitSeconds * 1000);
    return sent / ((performance.now() - t0) / 1000);
  } finally {
    child.kill();
  }
}

/**
 * Keep-alive HTTP/1.1 load: `concurrency` connections, one request in flight on each (as real
 * clients do: no pipelining), until every request is answered or the deadline passes. A response
 * counts as failed unless it is 200 without a bencoded `failure reason`.
 */
function announceLoad(port: number, requests: Buffer[], concurrency: number, deadline: number): Promise<{ sent: number; failed: number }> {
  let next = 0;
  let sent = 0;
  let failed = 0;
  const connection = () =>
    new Promise<void>((resolve, reject) => {
      const sock = connect(port, '127.0.0.1');
      let buf: Buffer = Buffer.alloc(0);
      const send = () => {
        if (next >= requests.length || Date.now() > deadline) {
          sock.end();
          resolve();
          return;
        }
        sock.write(requests[next++]);
      };
      sock.setNoDelay(true);
      sock.on('connect', send);
      sock.on('error', reject);
      sock.on('close', () => resolve());
      sock.on('data', (chunk: Buffer) => {
        buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
        for (;;) {
          const headEnd = buf.indexOf('\r\n\r\n');
          if (headEnd < 0) return;
          const head = buf.subarray(0, headEnd).toString('latin1');
          const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? NaN);
          if (!Number.isFinite(length)) {
            reject(new Error(`tracker answered without content-length: ${head.slice(0, 200)}`));
            return;
          }
          if (buf.length < headEnd + 4 + length) return;
          const body = buf.subarray(headEnd + 4, headEnd + 4 + length);
          sent++;
          if (!head.startsWith('HTTP/1.1 200') || body.includes('failure reason')) failed++;
          buf = buf.subarray(headEnd + 4 + length);
          send();
        }
      });
    });
  return Promise.all(Array.from({ length: concurrency }, connection)).then(() => ({ sent, failed }));
}
