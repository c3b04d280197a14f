import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LiarDrill } from './liar-drill.js';

describe('drill 5: a malicious peer serving corrupted pieces joins the swarm', () => {
  const drill = new LiarDrill();

  beforeAll(() => drill.start(), 120_000);
  afterAll(() => drill.stop());

  it('its pieces are rejected: 0 corrupt bytes reach the client or the cache, the pull completes right', async () => {
    const r = await drill.run();
    console.log(
      `drill 5: liar uploaded ${r.liarUploaded} B (all rejected); client got ${r.pulled.bytes} B with the right sha256; fetched swarm ${r.swarmBytes} B + origin ${r.originBytes} B; ${r.cacheBytes} cache bytes verified; liar still connected: ${r.liarStillConnected}`,
    );
    expect(r.pulled).toEqual({ status: 200, digest: r.digest, bytes: r.size });
    expect(r.cached).toBe(true);
    expect(r.liarUploaded).toBeGreaterThan(0);
    expect(r.swarmBytes + r.originBytes).toBe(r.size);
  }, 120_000);
});
