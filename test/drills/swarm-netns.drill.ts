import type { ChildProcess } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetnsCluster, type Host } from '../harness/netns-cluster.js';
import { BIN, tempDir } from '../support/app-process.js';
import { fileDigest, OciLayout, type BuiltImage } from '../support/oci-image.js';
import { MB, rssBytes, sample, SWARM, waitFor } from './drill-cluster.js';

const AGENTS = 20;

interface Started {
  proc: ChildProcess;
  out: () => string;
}

/** Spawns a process inside a host and resolves once `ready` appears in its output. */
async function startIn(host: Host, cmd: string, args: string[], ready: RegExp, timeoutMs = 90_000): Promise<Started> {
  const proc = host.spawn(cmd, args);
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-200_000)));
  proc.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-200_000)));
  await waitFor(
    () => {
      if (proc.exitCode !== null) throw new Error(`${cmd} exited in ${host.name}:\n${out}`);
      return ready.test(out);
    },
    timeoutMs,
    `${cmd} ready in ${host.name}`,
  );
  return { proc, out: () => out };
}

/** Every HTTP call to a host goes from inside a host (never from the root namespace). */
function curlIn(host: Host, url: string): string {
  return host.run('curl', ['-s', '-m', '10', url]).stdout;
}

describe(`drill 11b: a ${AGENTS}-host swarm pull (network namespaces, distinct IPs)`, () => {
  let cluster: NetnsCluster;
  let dir: string;
  let image: BuiltImage;
  let originLog: () => string;
  const agents: { host: Host; app: Started }[] = [];

  beforeAll(async () => {
    dir = await tempDir('p2p-drill-netns-');
    await writeFile(join(dir, 'swarm-token'), `${SWARM}\n`);
    const layout = new OciLayout(join(dir, 'layout'));
    image = await layout.addImage('v1', [30 * MB, 2_000]);
    cluster = await NetnsCluster.create([
      { name: 'origin' },
      { name: 'tracker' },
      // The proxy uploads at 10 MB/s: 20 agents must trade with each other to finish in time.
      { name: 'proxy', uploadBytesPerSec: 10 * MB },
      ...Array.from({ length: AGENTS }, (_, i) => ({ name: `a${i + 1}` })),
    ]);
    const [originHost, trackerHost, proxyHost] = ['origin', 'tracker', 'proxy'].map((n) => cluster.host(n));
    const originUrl = `http://${originHost.ip}:5000`;
    await mkdir(join(dir, 'storage'));
    await writeFile(
      join(dir, 'registry.yml'),
      `version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'storage')}\nhttp:\n  addr: ${originHost.ip}:5000\n`,
    );
    const origin = await startIn(originHost, 'docker-registry', ['serve', join(dir, 'registry.yml')], /listening on/);
    originLog = origin.out;
    const push = originHost.run(
      'skopeo',
      [
        'copy',
        '--quiet',
        '--preserve-digests',
        '--dest-tls-verify=false',
        `oci:${layout.dir}:v1`,
        `docker://${originHost.ip}:5000/drill/app:v1`,
      ],
      { timeoutMs: 120_000 },
    );
    expect(push.code, push.stderr).toBe(0);

    const write = async (name: string, config: Record<string, unknown>) => {
      const file = join(dir, `${name}.yaml`);
      await writeFile(file, stringify({ logFormat: 'json', swarmTokenFile: join(dir, 'swarm-token'), shutdownGraceSeconds: 2, ...config }));
      return file;
    };
    const app = (host: Host, name: string, file: string) => startIn(host, process.execPath, [BIN, name, '--config', file], /listening on/);
    const trackers = [`http://${trackerHost.ip}:6969/announce`];
    await app(trackerHost, 'tracker', await write('tracker', { host: trackerHost.ip, port: 6969, announceRate: 0 }));
    await app(
      proxyHost,
      'proxy',
      await write('proxy', {
        host: proxyHost.ip,
        port: 5005,
        p2pPort: 6882,
        registry: originUrl,
        dataDir: join(dir, 'proxy'),
        trackers,
        minFreeSpace: '1MB',
      }),
    );
    // Agents start two at a time (2 cores).
    for (let i = 0; i < AGENTS; i += 2) {
      const batch = [];
      for (const k of [i, i + 1].filter((n) => n < AGENTS)) {
        const host = cluster.host(`a${k + 1}`);
        const file = await write(`agent${k + 1}`, {
          host: '0.0.0.0',
          port: 5004,
          p2pPort: 6881,
          registry: originUrl,
          dataDir: join(dir, `agent${k + 1}`),
          trackers,
          proxies: [`http://${proxyHost.ip}:5005`],
          p2pMinSize: '1MB',
          stallTimeout: Number(process.env.DRILL_STALL_TIMEOUT ?? 10),
          minFreeSpace: '1MB',
        });
        batch.push(app(host, 'agent', file).then((started) => agents.push({ host, app: started })));
      }
      await Promise.all(batch);
    }
  }, 300_000);

  afterAll(async () => {
    await cluster?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('every agent pulls the image right, the big layer leaves the origin once, agents trade, RSS bounded', async () => {
    let peak = 0;
    const sampler = setInterval(() => {
      for (const a of agents)
        void rssBytes(a.app.proc.pid!).then(
          (r) => (peak = Math.max(peak, r)),
          () => undefined,
        );
    }, 200);
    const started = Date.now();
    let codes: (number | null)[];
    try {
      codes = await Promise.all(
        agents.map(({ host }, i) => {
          const p = host.spawn('skopeo', [
            'copy',
            '--quiet',
            '--src-tls-verify=false',
            'docker://127.0.0.1:5004/drill/app:v1',
            `dir:${join(dir, `out${i}`)}`,
          ]);
          let err = '';
          p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
          return new Promise<number | null>((res) => p.once('exit', (code) => res(code === 0 ? 0 : (console.log(host.name, err), code))));
        }),
      );
    } finally {
      clearInterval(sampler);
    }
    const ms = Date.now() - started;
    expect(codes.every((c) => c === 0)).toBe(true);
    let bytes = 0;
    for (let i = 0; i < agents.length; i++) {
      for (const l of image.layers) {
        expect(await fileDigest(join(dir, `out${i}`, l.digest.slice(7)))).toBe(l.digest);
        bytes += l.size;
      }
    }
    const big = image.layers[0].digest;
    const originGets = [...originLog().matchAll(/"GET \/v2\/\S+\/blobs\/(sha256:[a-f0-9]{64})\S* HTTP\/1\.1" (\d{3})/g)].filter(
      (m) => m[1] === big && m[2].startsWith('2'),
    ).length;
    let peerBytes = 0;
    let proxyBytes = 0;
    let relayBytes = 0;
    for (const { host } of agents) {
      const text = curlIn(host, 'http://127.0.0.1:5004/metrics');
      peerBytes += sample(text, 'p2p_blob_bytes_received_total', 'source="peer"');
      proxyBytes += sample(text, 'p2p_blob_bytes_received_total', 'source="proxy"');
      relayBytes += sample(text, 'p2p_blob_bytes_received_total', 'source="relay"');
    }
    console.log(
      `drill 11b: ${agents.length} hosts pulled in ${ms} ms, ${bytes} B checked; big layer origin GETs ${originGets}; swarm bytes from peers ${peerBytes}, from proxy ${proxyBytes}, relayed by the proxy ${relayBytes}; agent peak RSS ${(peak / MB).toFixed(0)} MB`,
    );
    expect(originGets).toBe(1);
    expect(peerBytes).toBeGreaterThan(0);
    expect(peak).toBeLessThan(600 * MB);
  }, 300_000);
});
