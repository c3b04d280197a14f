// Tracker announce throughput through the real app (bin/p2p tracker, Fastify, token check,
// per-client limit off) over loopback HTTP: S swarms × P peers, one announce each, C in flight.
// Usage: npm run build && node test/tracker/bench-tracker.mjs [swarms=100] [peers=1000] [concurrency=64]
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';

const [swarms, peersPer, concurrency] = [Number(process.argv[2] ?? 100), Number(process.argv[3] ?? 1000), Number(process.argv[4] ?? 64)];
const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const dir = await mkdtemp(join(tmpdir(), 'p2p-tracker-bench-'));
const TOKEN = 'bench-token';

const port = await new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
await writeFile(join(dir, 'token'), TOKEN);
await writeFile(
  join(dir, 'tracker.yaml'),
  `port: ${port}\nhost: 127.0.0.1\nannounceRate: 0\nlogLevel: warn\nswarmTokenFile: ${join(dir, 'token')}\n`,
);
// BENCH_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the tracker process.
const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
const proc = spawn(process.execPath, [...nodeArgs, join(root, 'bin/p2p'), 'tracker', '--config', join(dir, 'tracker.yaml')], {
  stdio: 'inherit',
});
const base = `http://127.0.0.1:${port}`;
const agent = new Agent({ connections: concurrency, pipelining: 1 });
try {
  for (let i = 0; ; i++) {
    if (i > 200) throw new Error('tracker did not start');
    try {
      if ((await request(`${base}/healthz`, { dispatcher: agent })).statusCode === 200) break;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  const enc = (b) => [...b].map((x) => `%${x.toString(16).padStart(2, '0')}`).join('');
  const hashes = Array.from({ length: swarms }, () => enc(randomBytes(20)));
  const total = swarms * peersPer;
  let next = 0;
  let failed = 0;
  const t0 = Date.now();
  async function worker() {
    for (;;) {
      const i = next++;
      if (i >= total) return;
      const swarm = i % swarms;
      const peer = Math.floor(i / swarms);
      const url = `${base}/announce?info_hash=${hashes[swarm]}&peer_id=${enc(randomBytes(20))}&port=${10000 + peer}&uploaded=0&downloaded=0&left=1&compact=1&numwant=50&event=started&token=${TOKEN}`;
      const res = await request(url, { dispatcher: agent });
      const body = Buffer.from(await res.body.arrayBuffer());
      if (res.statusCode !== 200 || body.includes('failure reason')) failed++;
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  const secs = (Date.now() - t0) / 1000;
  const metrics = await (await request(`${base}/metrics`, { dispatcher: agent })).body.text();
  const gauge = (n) =>
    Number(
      metrics
        .split('\n')
        .find((l) => l.startsWith(`p2p_${n}{`))
        ?.split(' ')
        .at(-1),
    );
  console.log(
    JSON.stringify({
      swarms,
      peersPerSwarm: peersPer,
      announces: total,
      failed,
      seconds: secs,
      announcesPerSecond: Math.round(total / secs),
      trackerSwarms: gauge('tracker_swarms'),
      trackerPeers: gauge('tracker_peers'),
      trackerRssMB: Math.round(
        Number(
          metrics
            .split('\n')
            .find((l) => l.startsWith('process_resident_memory_bytes{'))
            ?.split(' ')
            .at(-1),
        ) / 1e6,
      ),
    }),
  );
} finally {
  proc.kill('SIGTERM');
  await new Promise((r) => proc.once('exit', r));
  await agent.close();
  await rm(dir, { recursive: true, force: true });
}
