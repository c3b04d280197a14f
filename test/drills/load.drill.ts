import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuiltImage } from '../support/oci-image.js';
import { fileDigest, skopeoPull } from '../support/oci-image.js';
import { CREDS, DrillCluster, MB, rssBytes } from './drill-cluster.js';

const IMAGES = 50;

describe('drill 11a: 50 concurrent pulls of different images on one agent', () => {
  let c: DrillCluster;
  const images: BuiltImage[] = [];

  beforeAll(async () => {
    c = await DrillCluster.start({ proxies: 2, agents: 1, layers: [2_000] });
    // Each image: a 2 MB layer (swarm path) and a 100 kB one (origin path); pushed 5 at a time.
    for (let i = 0; i < IMAGES; i += 5) {
      images.push(
        ...(await Promise.all(Array.from({ length: Math.min(5, IMAGES - i) }, (_, k) => c.addImage(`load${i + k}`, [2 * MB, 100_000])))),
      );
    }
  }, 300_000);

  afterAll(async () => {
    await c?.stop();
  });

  it('all complete with the right digests, agent RSS bounded', async () => {
    const agent = c.agents[0];
    let peak = await rssBytes(agent.proc.pid!);
    const sampler = setInterval(
      () =>
        void rssBytes(agent.proc.pid!).then(
          (r) => (peak = Math.max(peak, r)),
          () => undefined,
        ),
      100,
    );
    const started = Date.now();
    let results: { ok: boolean; stderr: string }[];
    try {
      results = await Promise.all(
        images.map((_, i) => skopeoPull(`127.0.0.1:${agent.port}/drill/load${i}:v1`, `${c.dir}/out/${i}`, { creds: CREDS })),
      );
    } finally {
      clearInterval(sampler);
    }
    const ms = Date.now() - started;
    let bytes = 0;
    for (const [i, r] of results.entries()) {
      expect(r.ok, r.stderr).toBe(true);
      for (const l of images[i].layers) {
        expect(await fileDigest(`${c.dir}/out/${i}/${l.digest.slice(7)}`)).toBe(l.digest);
        bytes += l.size;
      }
    }
    console.log(
      `drill 11a: ${IMAGES} concurrent skopeo pulls in ${ms} ms, ${bytes} B checked, agent peak RSS ${(peak / MB).toFixed(0)} MB`,
    );
    expect(peak).toBeLessThan(600 * MB);
  }, 300_000);
});
