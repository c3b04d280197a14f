import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MetricsService, ThrottleService } from '#ops';
import { createBlobTorrent } from '../torrent/blob-torrent.js';
import { SwarmClient, withToken } from './swarm-client.js';
import { SwarmMetrics } from './swarm.metrics.js';

describe(SwarmClient.name, () => {
  let dir: string;
  const blobs: { path: string; metainfo: Buffer; infoHash: string }[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-client-'));
    for (let i = 0; i < 3; i++) {
      const data = randomBytes(256 * 1024 + i);
      const hex = createHash('sha256').update(data).digest('hex');
      const path = join(dir, hex);
      await writeFile(path, data);
      blobs.push({ path, ...(await createBlobTorrent(path, hex, data.length, [])) });
    }
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('seeds in place, caps the number seeded (LRU) and tells the owner what stopped', async () => {
    const stopped: string[] = [];
    const metrics = new MetricsService('test');
    const client = new SwarmClient({
      role: 'proxy',
      port: 0,
      trackers: [],
      throttle: new ThrottleService({ uploadRate: { unit: 'bytes/s', initial: 0 } }),
      limits: { upload: 'uploadRate' },
      maxSeeding: 2,
      seedTtlSeconds: 3600,
      metrics: new SwarmMetrics(metrics),
      onStopSeeding: (e) => stopped.push(`${e.infoHash}:${e.reason}`),
    });
    try {
      expect(await client.ready()).toBeGreaterThan(0);
      await client.seed(blobs[0].metainfo, blobs[0].path);
      await client.seed(blobs[1].metainfo, blobs[1].path);
      client.touch(blobs[0].infoHash);
      await client.seed(blobs[2].metainfo, blobs[2].path);
      await expect.poll(() => stopped).toEqual([`${blobs[1].infoHash}:cap`]);
      expect(
        client
          .list()
          .map((t) => [t.infoHash, t.state, t.path])
          .sort(),
      ).toEqual([blobs[0], blobs[2]].map((b) => [b.infoHash, 'seeding', b.path]).sort());
      expect(await metrics.render()).toMatch(/p2p_swarm_torrents\{state="seeding",app="test"\} 2/);
      await client.stopSeeding(blobs[0].infoHash);
      expect(stopped).toContain(`${blobs[0].infoHash}:stopped`);
    } finally {
      await client.destroy();
    }
    expect(stopped).toContain(`${blobs[2].infoHash}:shutdown`);
  });

  it('refuses to seed a file whose name is not the torrent name', async () => {
    const client = new SwarmClient({
      role: 'agent',
      port: 0,
      trackers: [],
      throttle: new ThrottleService({}),
      limits: {},
      maxSeeding: 1,
      seedTtlSeconds: 1,
    });
    try {
      await expect(client.seed(blobs[0].metainfo, blobs[1].path)).rejects.toThrow(/basename/);
      await expect(client.seed(Buffer.from('junk'), blobs[0].path)).rejects.toThrow(/not a torrent/);
    } finally {
      await client.destroy();
    }
  });

  it('adds the token the way the tracker reads it', () => {
    expect(withToken('http://t:6969/announce', 'a b')).toBe('http://t:6969/announce?token=a%20b');
    expect(withToken('http://t:6969/announce?x=1', 'k')).toBe('http://t:6969/announce?x=1&token=k');
    expect(withToken('http://t:6969/announce', undefined)).toBe('http://t:6969/announce');
  });
});
