/**
 * The agent's cache-hit serving path, side by side for one or more builds (issue #12 items 3 and 8):
 *
 *   cache   CPU ms per MB of `curl -o /dev/null` GETs of a blob already in the agent's cache
 *           (whole blob, then a Range of the second half), median over rounds
 *   slow    agent RSS growth with N open blob responses whose clients read nothing, per reader
 *
 *   npm run build && node dist/bench/datapath/serve-bench.js --build base=/tmp/p2p-serve-base --build cand=. \
 *       --blob-mb 256 --rounds 5 --slow 500
 *
 * Each build's directory must be built (`dist/`). Needs docker-registry, skopeo, htpasswd and curl.
 * Everything listens on 127.0.0.1; every process started is stopped by PID at the end.
 */
import { connect, type Socket } from 'node:net';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { OciLayout, pushImage } from '../../test/support/oci-image.js';
import { startOriginRegistry } from '../../test/support/origin-registry.js';
import { run, startApp, stopAllChildren, type RunningApp } from './bench-processes.js';
import { parseVmRss } from './datapath-stats.js';
import { cpuTicks, quiesce } from './proc-sampler.js';

const MB = 1e6;
const CREDS = 'bench:bench-pass';
const BASIC = `Basic ${Buffer.from(CREDS).toString('base64')}`;

interface Options {
  builds: { name: string; dir: string }[];
  blobMb: number;
  rounds: number;
  slow: number;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { builds: [], blobMb: 256, rounds: 5, slow: 500 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === '--build') {
      const eq = value.indexOf('=');
      opts.builds.push({ name: value.slice(0, eq), dir: resolve(value.slice(eq + 1)) });
    } else if (flag === '--blob-mb') opts.blobMb = Number(value);
    else if (flag === '--rounds') opts.rounds = Number(value);
    else if (flag === '--slow') opts.slow = Number(value);
    else throw new Error(`unknown option ${flag}`);
    i++;
  }
  if (opts.builds.length === 0) opts.builds.push({ name: 'working-tree', dir: resolve('.') });
  return opts;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rss = async (pid: number) => parseVmRss(await readFile(`/proc/${pid}/status`, 'utf8'));
const log = (line: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);

/** CPU ms per MB the agent spends on one curl GET (whole blob or a range). */
async function cpuPerMb(agent: RunningApp, url: string, range: string | undefined, bytes: number, clkTck: number): Promise<number> {
  await quiesce([agent.pid]);
  const before = await cpuTicks(agent.pid);
  await run('curl', ['-sf', '-o', '/dev/null', '-H', `Authorization: ${BASIC}`, ...(range ? ['-r', range] : []), url]);
  const after = await cpuTicks(agent.pid);
  return ((after.total - before.total) * 1000) / clkTck / (bytes / MB);
}

/** Opens `n` blob GETs that never read; resolves with the RSS growth once it has stopped growing. */
async function slowReaders(agent: RunningApp, path: string, n: number): Promise<{ grewBytes: number; sockets: Socket[] }> {
  await quiesce([agent.pid]);
  const base = await rss(agent.pid);
  const sockets: Socket[] = [];
  for (let i = 0; i < n; i++) {
    const s = connect(agent.port, '127.0.0.1');
    s.on('error', () => undefined);
    s.write(`GET ${path} HTTP/1.1\r\nHost: bench\r\nAuthorization: ${BASIC}\r\nConnection: close\r\n\r\n`);
    s.pause();
    sockets.push(s);
  }
  // Settled: no growth over 1 s (bounded at 30 s, well below the default clientIdleTimeout of 60 s).
  let last = 0;
  let peak = base;
  for (let t = 0; t < 30; t++) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = await rss(agent.pid);
    peak = Math.max(peak, now);
    if (Math.abs(now - last) < 2 * 2 ** 20) break;
    last = now;
  }
  return { grewBytes: peak - base, sockets };
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const scratch = await mkdtemp(join(tmpdir(), 'p2p-serve-bench-'));
  const clkTck = Number((await run('getconf', ['CLK_TCK'])).trim()) || 100;
  try {
    const [user, pass] = CREDS.split(':');
    const origin = await startOriginRegistry({ auth: { username: user, password: pass }, dir: join(scratch, 'origin') });
    const layout = new OciLayout(join(scratch, 'layout'));
    const image = await layout.addImage('v1', [opts.blobMb * MB]);
    await pushImage(layout.dir, 'v1', { host: origin.host, repo: 'bench/serve', creds: CREDS });
    const blob = image.layers[0];
    const path = `/v2/bench/serve/blobs/${blob.digest}`;
    const half = Math.floor(blob.size / 2);
    const results: Record<string, { whole: number[]; range: number[]; slowPerReader?: number }> = {};
    const agents = new Map<string, RunningApp>();
    for (const build of opts.builds) {
      const dir = join(scratch, build.name);
      await mkdir(dir, { recursive: true });
      const agent = await startApp(build.dir, 'agent', `agent-${build.name}`, dir, {
        registry: origin.url,
        dataDir: join(dir, 'data'),
        p2pPort: 0,
        minFreeSpace: '10MB',
      });
      agents.set(build.name, agent);
      // Fill the cache once.
      await run('curl', ['-sf', '-o', '/dev/null', '-H', `Authorization: ${BASIC}`, `${agent.url}${path}`]);
      results[build.name] = { whole: [], range: [] };
    }
    for (let round = 0; round < opts.rounds; round++) {
      const order = round % 2 === 0 ? opts.builds : [...opts.builds].reverse();
      for (const build of order) {
        const agent = agents.get(build.name)!;
        results[build.name].whole.push(await cpuPerMb(agent, `${agent.url}${path}`, undefined, blob.size, clkTck));
        results[build.name].range.push(await cpuPerMb(agent, `${agent.url}${path}`, `${half}-`, blob.size - half, clkTck));
      }
      log(`round ${round + 1}/${opts.rounds} done`);
    }
    if (opts.slow > 0) {
      for (const build of opts.builds) {
        const agent = agents.get(build.name)!;
        const { grewBytes, sockets } = await slowReaders(agent, path, opts.slow);
        results[build.name].slowPerReader = grewBytes / opts.slow;
        for (const s of sockets) s.destroy();
        log(`${build.name}: ${opts.slow} slow readers grew RSS by ${(grewBytes / MB).toFixed(1)} MB`);
      }
    }
    const lines = [
      `blob ${(blob.size / MB).toFixed(0)} MB, ${opts.rounds} rounds (medians), ${opts.slow} slow readers`,
      '| build | whole GET CPU ms/MB | Range GET (2nd half) CPU ms/MB | RSS per slow reader |',
      '|---|---|---|---|',
      ...opts.builds.map((b) => {
        const r = results[b.name];
        const slow = r.slowPerReader === undefined ? '–' : `${(r.slowPerReader / 2 ** 20).toFixed(2)} MiB`;
        return `| ${b.name} | ${median(r.whole).toFixed(3)} (${r.whole.map((x) => x.toFixed(2)).join(' ')}) | ${median(r.range).toFixed(3)} | ${slow} |`;
      }),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    await origin.stop();
  } finally {
    await stopAllChildren();
    await rm(scratch, { recursive: true, force: true });
  }
}

const stop = () => void stopAllChildren().then(() => process.exit(130));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
