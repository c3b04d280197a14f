// A malicious BitTorrent peer for drill 5 (run `npm run build` first): it takes a real blob torrent,
// writes random bytes of the same length as the "blob", and seeds them without verification
// (claims every piece), announcing to the cluster's tracker with the swarm token.
// argv[2]: JSON {metainfo, dir, trackers, token}. Stdout: JSON lines {event, ...}.
import 'reflect-metadata';
import { randomFillSync } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MetricsService, ThrottleService } from '../../dist/libs/ops/src/index.js';
import { describeMetainfo, SwarmClient, SwarmMetrics } from '../../dist/libs/swarm/src/index.js';

const cfg = JSON.parse(process.argv[2]);
const emit = (event, data = {}) => process.stdout.write(`${JSON.stringify({ event, ...data })}\n`);
const metrics = new MetricsService('malicious-peer');
const client = new SwarmClient({
  role: 'agent',
  metrics: new SwarmMetrics(metrics),
  port: 0,
  trackers: cfg.trackers,
  swarmToken: cfg.token,
  throttle: new ThrottleService({ uploadRate: { unit: 'bytes/s', initial: 0 } }),
  limits: { upload: 'uploadRate' },
  maxSeeding: 10,
  seedTtlSeconds: 600,
  uploadSlots: 50,
  // It seeds random bytes under a real torrent: without this the engine would refuse to upload them.
  verifyReads: false,
  reannounceSeconds: 1,
  progressLogSeconds: 60,
});
const port = await client.ready();
const metainfo = await readFile(cfg.metainfo);
const { name, length } = await describeMetainfo(metainfo);
const file = join(cfg.dir, name);
const fh = await open(file, 'w');
const chunk = Buffer.allocUnsafe(1 << 20);
for (let pos = 0; pos < length; pos += chunk.length) await fh.write(randomFillSync(chunk), 0, Math.min(chunk.length, length - pos), pos);
await fh.close();
await client.seed(metainfo, file);
emit('seeding', { port });
setInterval(async () => {
  const text = await metrics.render();
  const uploaded = text
    .split('\n')
    .filter((l) => l.startsWith('p2p_swarm_uploaded_bytes_total'))
    .reduce((s, l) => s + Number(l.split(' ').at(-1)), 0);
  emit('uploaded', { bytes: uploaded });
}, 250);
const stop = async () => {
  await client.destroy();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
