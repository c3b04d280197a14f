import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LiarDrill } from './liar-drill.js';

// Fails today (libs/swarm does not ban peers whose pieces fail SHA1; see RELIABILITY.md): one liar
// makes every piece fail, the swarm delivers nothing and each pull stalls over to the origin.
describe('drill 5b: a peer whose pieces fail verification is dropped and the swarm still delivers', () => {
  const drill = new LiarDrill();

  beforeAll(() => drill.start(), 120_000);
  afterAll(() => drill.stop());

  it('the liar is disconnected and the honest proxy serves the blob through the swarm', async () => {
    const r = await drill.run();
    console.log(`drill 5b: liar uploaded ${r.liarUploaded} B; swarm ${r.swarmBytes} B, origin ${r.originBytes} B; liar still connected: ${r.liarStillConnected}`);
    expect(r.pulled).toEqual({ status: 200, digest: r.digest, bytes: r.size });
    expect(r.liarStillConnected).toBe(false);
    expect(r.swarmBytes).toBe(r.size);
    // A dropped liar sends at most a few pieces' worth before it is caught.
    expect(r.liarUploaded).toBeLessThan(r.size);
  }, 120_000);
});
