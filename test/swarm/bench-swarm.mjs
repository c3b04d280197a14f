// Benchmark: one agent-like SwarmClient pulls a blob already seeded by a proxy-like SwarmClient
// (separate processes, loopback, direct peer, no tracker). Prints MB/s, time to first byte, peak RSS.
// Usage: npm run build && node test/swarm/bench-swarm.mjs [sizeMB=1024] [nostream]
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, open, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const sizeMB = Number(process.argv[2] ?? 1024);
const noStream = process.argv[3] === 'nostream';
const script = join(dirname(fileURLToPath(import.meta.url)), 'fixtures/swarm-peer.mjs');
const dir = await mkdtemp(join(tmpdir(), 'p2p-swarm-bench-'));
const procs = [];

function run(config) {
  const proc = spawn(process.execPath, [script, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'inherit'] });
  procs.push(proc);
  let buf = '';
  const events = [];
  const waiters = [];
  proc.stdout.on('data', (c) => {
    buf += c;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.startsWith('{"event"')) continue;
      const e = JSON.parse(line);
      events.push(e);
      for (const w of [...waiters]) w(e);
    }
  });
  return {
    waitFor: (name) =>
      new Promise((resolve, reject) => {
        const hit = events.find((e) => e.event === name);
        if (hit) return resolve(hit);
        waiters.push((e) => e.event === name && resolve(e));
        proc.on('exit', () => reject(new Error(`process exited before ${name}`)));
      }),
  };
}

try {
  // Random content written in 16 MiB chunks (never the whole blob in memory).
  const hash = createHash('sha256');
  const tmp = join(dir, 'blob.tmp');
  const fh = await open(tmp, 'w');
  for (let left = sizeMB * 1e6; left > 0;) {
    const chunk = randomBytes(Math.min(left, 16 * 1024 * 1024));
    hash.update(chunk);
    await fh.write(chunk);
    left -= chunk.length;
  }
  await fh.close();
  const hex = hash.digest('hex');
  await mkdir(join(dir, 'seed'));
  await mkdir(join(dir, 'dl'));
  await rename(tmp, join(dir, 'seed', hex));

  let t = Date.now();
  const seeder = run({ mode: 'seed', file: join(dir, 'seed', hex), metainfoOut: join(dir, 'blob.torrent'), trackers: [] });
  const { port } = await seeder.waitFor('seeding');
  console.log(`seeder ready (torrent made, ${sizeMB} MB hashed) in ${Date.now() - t} ms`);
  t = Date.now();
  const leecher = run({
    mode: 'download',
    metainfo: join(dir, 'blob.torrent'),
    dir: join(dir, 'dl'),
    peers: [`127.0.0.1:${port}`],
    trackers: [],
    progressEveryMs: 100000,
    noStream,
  });
  const firstP = noStream ? undefined : leecher.waitFor('first-byte');
  const done = await leecher.waitFor('done');
  if (!noStream && done.sha256 !== hex) throw new Error('digest mismatch');
  const first = noStream ? { ms: null } : await firstP;
  console.log(
    JSON.stringify({
      sizeMB,
      throughputMBs: +((sizeMB * 1e6) / 1e6 / (done.ms / 1000)).toFixed(1),
      firstByteMs: first.ms,
      leecherPeakRssMB: Math.round(done.maxRss / 1e6),
      totalMs: done.ms,
    }),
  );
} finally {
  for (const p of procs) p.kill('SIGTERM');
  await rm(dir, { recursive: true, force: true });
}
