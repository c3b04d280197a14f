import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/app-process.js';
import { NetnsCluster } from './netns-cluster.js';

const CAP = 2_000_000; // bytes/s

describe(NetnsCluster.name, () => {
  let cluster: NetnsCluster;
  let dir: string;

  beforeAll(async () => {
    dir = await tempDir();
    await writeFile(join(dir, 'blob'), Buffer.alloc(4_000_000, 7));
    cluster = await NetnsCluster.create([{ name: 'server', uploadBytesPerSec: CAP }, { name: 'client' }, { name: 'free' }]);
  });
  afterAll(async () => {
    await cluster?.destroy();
  });

  it('blackholes the test subnet in the root namespace while it exists', () => {
    expect(spawnSync('ip', ['route', 'show', '10.77.0.0/16'], { encoding: 'utf8' }).stdout).toContain('blackhole');
  });

  it('connects hosts to each other and caps the upload of a capped host', async () => {
    const server = cluster.host('server');
    const proc = server.spawn('python3', ['-m', 'http.server', '8000', '--bind', server.ip, '--directory', dir]);
    const client = cluster.host('client');
    let up = false;
    for (let i = 0; i < 100 && !up; i++) {
      up = client.run('curl', ['-s', '-o', '/dev/null', '-m', '1', `http://${server.ip}:8000/`]).code === 0;
      if (!up) await new Promise((r) => setTimeout(r, 100));
    }
    expect(up).toBe(true);
    const res = client.run('curl', ['-s', '-o', '/dev/null', '-w', '%{size_download} %{speed_download}', `http://${server.ip}:8000/blob`]);
    const [size, speed] = res.stdout.split(' ').map(Number);
    expect(size).toBe(4_000_000);
    // The cap is 2 MB/s: an uncapped veth moves GB/s, so even a loose bound proves tc is in place.
    expect(speed).toBeLessThan(CAP * 1.5);
    proc.kill();
  });

  it('removes its namespaces and the route on destroy', async () => {
    const names = [...cluster.hosts.values()].map((h) => h.ns);
    // Another cluster (a concurrent bench) may own the route; then it must stay for that one.
    const owned = cluster.ownsBlackholeRoute;
    await cluster.destroy();
    const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    for (const ns of names) expect(list).not.toContain(ns);
    const route = spawnSync('ip', ['route', 'show', '10.77.0.0/16'], { encoding: 'utf8' }).stdout;
    expect(route.includes('blackhole')).toBe(!owned);
  });
});
