import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { skopeoPull } from '../support/oci-image.js';
import { AUTH, CREDS, DrillCluster, get, MB, pullBlob } from './drill-cluster.js';
import { ociErrorCode } from '../support/oci-error-body.js';

describe('drill 4: origin down while blobs are cached', () => {
  let c: DrillCluster;

  beforeAll(async () => {
    c = await DrillCluster.start({ proxies: 1, agents: 2, layers: [5 * MB, 2_000] });
  }, 120_000);

  afterAll(async () => {
    await c?.stop();
  });

  it('blobs cached on the agent are served by digest; tag pulls fail with a clear 503; nothing hangs', async () => {
    const [a0, a1] = c.agents;
    const r = await skopeoPull(`127.0.0.1:${a0.port}/drill/app:v1`, `${c.dir}/out-before`, { creds: CREDS });
    expect(r.ok, r.stderr).toBe(true);
    await c.origin.stop();

    // By digest, from the agent's cache (its credential decision is still within authCacheTtl).
    for (const l of [...c.image.layers, ...c.image.configs]) {
      expect(await pullBlob(a0, l.digest)).toEqual({ status: 200, digest: l.digest, bytes: l.size });
    }
    // Tags are always resolved at the origin: a clear OCI error, no hang, no 200 with stale bytes.
    const tag = await get(`${a0.url}/v2/drill/app/manifests/v1`, {
      authorization: AUTH,
      accept: 'application/vnd.oci.image.manifest.v1+json',
    });
    expect(tag.status).toBe(503);
    expect(ociErrorCode(tag.text)).toBe('UNAVAILABLE');
    const byTag = await skopeoPull(`127.0.0.1:${a0.port}/drill/app:v1`, `${c.dir}/out-tag`, { creds: CREDS });
    expect(byTag.ok).toBe(false);
    expect(byTag.stderr).toMatch(/503|unavailable/i);

    // A blob only the proxy holds: the proxy cannot check the caller's credentials at the origin, so
    // it refuses; the agent falls back to the (down) origin and answers 503 — never unchecked bytes.
    const big = c.image.layers[0];
    const other = await get(`${a1.url}/v2/drill/app/blobs/${big.digest}`, { authorization: AUTH });
    console.log(
      `drill 4: cached agent served ${c.image.layers.length + 1} blobs by digest; tag → ${tag.status}; proxy-only blob → ${other.status}`,
    );
    expect(other.status).toBe(503);
    // Wrong credentials still get nothing, origin down or not.
    const wrong = await get(`${a0.url}/v2/drill/app/blobs/${big.digest}`, {
      authorization: `Basic ${Buffer.from('puller:nope').toString('base64')}`,
    });
    expect(wrong.status).toBeGreaterThanOrEqual(400);
    expect(wrong.text.length).toBeLessThan(1000);
  }, 120_000);
});
