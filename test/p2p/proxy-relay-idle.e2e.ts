import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OciLayout, pushImage, type BuiltImage } from '../support/oci-image.js';
import { CREDS, startLoopbackCluster, SWARM, type LoopbackCluster } from './cluster.js';

const MB = 1_000_000;

/** issue #12 item 8 on the proxy side: an agent that stops reading a relay is cut, its buffers freed. */
describe('proxy relay: a reader that takes nothing for clientIdleTimeout is cut (real processes)', () => {
  let cluster: LoopbackCluster;
  let image: BuiltImage;

  beforeAll(async () => {
    cluster = await startLoopbackCluster({ proxies: 1, agents: 0, proxyConfig: { clientIdleTimeout: 1 } });
    const layout = new OciLayout(join(cluster.dir, 'layout'));
    image = await layout.addImage('v1', [48 * MB]);
    await pushImage(layout.dir, 'v1', { host: cluster.origin.host, repo: 'idle/app', creds: CREDS });
  }, 120_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('cuts a relay whose reader stopped, after about clientIdleTimeout, and keeps serving others', async () => {
    const proxy = cluster.proxies[0];
    const { digest } = image.layers[0];
    const request = [
      `GET /v1/blobs/${digest}?repo=idle/app HTTP/1.1`,
      `Host: 127.0.0.1:${proxy.port}`,
      `x-p2p-swarm-token: ${SWARM}`,
      `Authorization: Basic ${Buffer.from(CREDS).toString('base64')}`,
      '',
      '',
    ].join('\r\n');
    const socket = connect(proxy.port, '127.0.0.1');
    let received = 0;
    let stalledAt = 0;
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      // Read the headers and a first megabyte, then stop reading: the kernel buffers fill and the
      // proxy's writes stop being accepted.
      if (received > MB && !stalledAt) {
        socket.pause();
        stalledAt = Date.now();
        // A paused socket does not see the proxy close it: read again after 4 s. Cut, only what
        // the kernel buffers held arrives and the connection ends; not cut, the whole blob follows.
        setTimeout(() => socket.resume(), 4_000);
      }
    });
    socket.write(request);
    await closed;
    expect(stalledAt).toBeGreaterThan(0);
    // Cut, not completed: far less than the 48 MB blob arrived (1 MB read + the kernel buffers).
    expect(received).toBeLessThan(image.layers[0].size / 2);
    expect(proxy.output()).not.toMatch(/"level":"error"|\bERROR\b/);
    // The proxy still serves a reader that reads.
    const res = await fetch(`${proxy.url}/v1/blobs/${digest}?repo=idle/app`, {
      headers: { 'x-p2p-swarm-token': SWARM, authorization: `Basic ${Buffer.from(CREDS).toString('base64')}`, range: 'bytes=0-1023' },
    });
    expect(res.status).toBe(206);
    expect((await res.arrayBuffer()).byteLength).toBe(1024);
  }, 60_000);
});
