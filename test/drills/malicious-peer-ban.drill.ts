import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LiarDrill } from './liar-drill.js';

// The liar (test/drills/malicious-peer.mjs) is our own engine with verifyReads off, so it passes the
// authenticated handshake with the swarm token; the agent bans it after two failed pieces and the
// honest proxy (a trusted direct peer) delivers the rest. Engine-level cases (a liar alone, a liar
// that reconnects, pieces shared with an honest seed) are in libs/swarm/src/client/swarm-liar.spec.ts.
describe('drill 5b: a peer whose pieces fail verification is dropped and the swarm still delivers', () => {
  const drill = new LiarDrill();

  beforeAll(() => drill.start(), 120_000);
  afterAll(() => drill.stop());

  it('the liar is disconnected and the honest proxy serves the blob through the swarm', async () => {
    const r = await drill.run();
    console.log(
      `drill 5b: liar uploaded ${r.liarUploaded} B; swarm ${r.swarmBytes} B, origin ${r.originBytes} B; liar still connected: ${r.liarStillConnected}`,
    );
    expect(r.pulled).toEqual({ status: 200, digest: r.digest, bytes: r.size });
    expect(r.liarStillConnected).toBe(false);
    expect(r.swarmBytes).toBe(r.size);
    // A dropped liar sends at most a few pieces' worth before it is caught.
    expect(r.liarUploaded).toBeLessThan(r.size);
  }, 120_000);
});
