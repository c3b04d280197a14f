import { createServer, type Server } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppProcess } from '../support/app-process.js';
import { ADMIN, AUTH, DrillCluster, get, MB, metrics, pullBlob, sample, SWARM } from './drill-cluster.js';

const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

/** Sends a request and counts every body byte (never trusting content-length). */
async function send(url: string, init: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}) {
  const res = await request(url, { method: (init.method ?? 'GET') as 'GET', headers: init.headers, body: init.body });
  let bytes = 0;
  let text = '';
  for await (const chunk of res.body) {
    bytes += (chunk as Buffer).length;
    if (text.length < 4096) text += (chunk as Buffer).toString();
  }
  return { status: res.statusCode, bytes, text };
}

describe('drill 9: security (loopback cluster: origin with auth, tracker, proxy, agent)', () => {
  let c: DrillCluster;
  let agent: AppProcess;
  let proxy: AppProcess;
  let tracker: AppProcess;
  let sentinel: Server;
  let sentinelConnections = 0;
  let sentinelPort = 0;
  let checks = 0;

  beforeAll(async () => {
    c = await DrillCluster.start({ proxies: 1, agents: 1, layers: [3 * MB, 2_000] });
    [agent, proxy, tracker] = [c.agents[0], c.proxies[0], c.tracker!];
    // Stands in for a host that is not accelerated: no connection may ever reach it.
    sentinel = createServer((s) => {
      sentinelConnections++;
      s.destroy();
    });
    await new Promise<void>((r) => sentinel.listen(0, '127.0.0.1', r));
    sentinelPort = (sentinel.address() as { port: number }).port;
    // Cache both layers on the agent (the big one through the swarm).
    for (const l of c.image.layers) expect((await pullBlob(agent, l.digest)).digest).toBe(l.digest);
  }, 120_000);

  afterAll(async () => {
    sentinel?.close();
    await c?.stop();
    console.log(`drill 9: ${checks} hostile requests checked`);
  });

  it('wrong or missing credentials on a cached private blob get 0 blob bytes (GET, HEAD, Range)', async () => {
    const layer = c.image.layers[0];
    const url = `${agent.url}/v2/drill/app/blobs/${layer.digest}`;
    const bad: Record<string, string>[] = [
      {},
      { authorization: basic('puller', 'wrong') },
      { authorization: basic('nobody', 'p2p-secret') },
      { authorization: 'Bearer forged' },
      { authorization: 'Basic !!!' },
    ];
    for (const headers of bad) {
      for (const extra of [{}, { range: 'bytes=0-1023' }] as Record<string, string>[]) {
        const r = await send(url, { headers: { ...headers, ...extra } });
        checks++;
        expect(r.status, JSON.stringify(headers)).toBe(401);
        expect(r.bytes).toBeLessThan(512);
        expect(r.text).not.toContain('\u0000');
      }
      expect((await send(url, { method: 'HEAD', headers })).status).toBe(401);
      checks++;
    }
    expect((await send(url, { headers: { authorization: AUTH } })).bytes).toBe(layer.size);
  });

  it('?ns= naming a host that is not accelerated is refused and no request reaches it', async () => {
    const layer = c.image.layers[0];
    for (const path of [`/v2/drill/app/blobs/${layer.digest}`, '/v2/drill/app/manifests/v1', '/v2/drill/app/tags/list']) {
      for (const ns of [
        `127.0.0.1:${sentinelPort}`,
        `localhost:${sentinelPort}`,
        `127.0.0.1:${sentinelPort}/x`,
        `user@127.0.0.1:${sentinelPort}`,
      ]) {
        const r = await send(`${agent.url}${path}?ns=${encodeURIComponent(ns)}`, { headers: { authorization: AUTH } });
        checks++;
        expect(r.status, `${path} ns=${ns}`).toBeGreaterThanOrEqual(400);
        expect(r.status).toBeLessThan(500);
      }
    }
    expect(sentinelConnections).toBe(0);
  });

  it('a query parameter given twice (?ns=a&ns=b, ?repo=a&repo=b) gets a 4xx from agent and proxy, not a 5xx', async () => {
    const layer = c.image.layers[0];
    const swarm = { 'x-p2p-swarm-token': SWARM, authorization: AUTH };
    const urls: [string, Record<string, string>][] = [
      [`${agent.url}/v2/drill/app/blobs/${layer.digest}?ns=a&ns=b`, { authorization: AUTH }],
      [`${proxy.url}/v1/blobs/${layer.digest}/torrent?repo=drill/app&ns=a&ns=b`, swarm],
      [`${proxy.url}/v1/blobs/${layer.digest}/torrent?repo=drill/app&repo=drill/app`, swarm],
      [`${proxy.url}/v1/blobs/${layer.digest}?repo=drill/app&ns=a&ns=b`, swarm],
    ];
    for (const [url, headers] of urls) {
      const r = await send(url, { headers });
      checks++;
      expect(r.status, url).toBeGreaterThanOrEqual(400);
      expect(r.status, url).toBeLessThan(500);
    }
  });

  it('path traversal and malformed names/digests get 400 (never a file, never a 5xx)', async () => {
    const digest = c.image.layers[0].digest;
    const statuses: string[] = [];
    const paths = [
      `/v2/drill/app/blobs/sha256:..%2F..%2F..%2F..%2Fetc%2Fpasswd`,
      `/v2/drill/app/blobs/sha256:${'0'.repeat(63)}/`,
      `/v2/drill/app/blobs/sha256:${'0'.repeat(62)}..`,
      `/v2/..%2F..%2Fetc/blobs/${digest}`,
      `/v2/drill%2F..%2F..%2Fapp/blobs/${digest}`,
      `/v2/drill/../../app/blobs/${digest}`.replace('/../../', '/%2e%2e/%2e%2e/'),
      `/v2/DRILL/app/blobs/${digest}`,
      `/v2/drill/app/blobs/${digest.toUpperCase()}`,
      `/v2/drill/app/blobs/sha512:${'0'.repeat(128)}x`,
      `/v2/drill/app/blobs/${digest}%00`,
      `/v2/drill/app/manifests/..%2F..%2Fetc%2Fpasswd`,
      `/v2/drill/app/manifests/${'a'.repeat(200)}`,
      `/v2/${'a/'.repeat(200)}app/blobs/${digest}`,
      `/v2/drill//app/blobs/${digest}`,
    ];
    for (const path of paths) {
      const r = await send(`${agent.url}${path}`, { headers: { authorization: AUTH } });
      checks++;
      statuses.push(`${r.status} ${path.slice(0, 60)}`);
      // Paths that are not a blob or manifest route are passed through to the origin, which decides (e.g. a 301).
      expect([301, 400, 404], path).toContain(r.status);
      expect(r.text).not.toMatch('root:');
      expect(r.text).not.toContain('\u0000');
    }
    console.log(statuses.join('\n'));
    // The blob-shaped ones must be 400 exactly.
    for (const path of [paths[0], paths[2], paths[7], paths[8], paths[9]])
      expect((await send(`${agent.url}${path}`, { headers: { authorization: AUTH } })).status).toBe(400);
  });

  it('admin API without a token is 401, with a wrong one 401/403, on agent, proxy and tracker', async () => {
    for (const app of [agent, proxy, tracker]) {
      for (const [headers, want] of [
        [{}, 401],
        [{ authorization: 'Bearer wrong' }, 401],
        [{ authorization: `Basic ${Buffer.from(`x:${ADMIN}`).toString('base64')}` }, 401],
      ] as const) {
        const g = await send(`${app.url}/admin/rate`, { headers: { ...headers } });
        const p = await send(`${app.url}/admin/rate`, {
          method: 'PATCH',
          headers: { ...headers, 'content-type': 'application/json' },
          body: '{"uploadRate":"1"}',
        });
        checks += 2;
        expect([g.status, p.status], `${app.url} ${JSON.stringify(headers)}`).toEqual([want, want]);
      }
      expect((await send(`${app.url}/admin/rate`, { headers: { authorization: `Bearer ${ADMIN}` } })).status).toBe(200);
    }
  });

  it('a non-JSON admin body is a 400, not a crash (the agent parses other bodies as raw streams)', async () => {
    for (const type of ['application/octet-stream', 'text/plain', 'multipart/form-data', 'application/vnd.oci.image.manifest.v1+json']) {
      for (const app of [agent, proxy, tracker]) {
        const r = await send(`${app.url}/admin/rate`, {
          method: 'PATCH',
          headers: { authorization: `Bearer ${ADMIN}`, 'content-type': type },
          body: '[true,null,"x"]',
        });
        checks++;
        expect([400, 415], `${type} → ${app.url}`).toContain(r.status);
      }
    }
    for (const body of ['[1,2]', 'null', '"1MB"', '1']) {
      const r = await send(`${agent.url}/admin/rate`, {
        method: 'PATCH',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body,
      });
      checks++;
      expect(r.status, body).toBe(400);
    }
    for (const app of [agent, proxy, tracker]) expect((await get(`${app.url}/healthz`)).status).toBe(200);
  });

  it('the proxy torrent API and the tracker refuse callers without the swarm token', async () => {
    const digest = c.image.layers[0].digest;
    for (const headers of [{}, { 'x-p2p-swarm-token': 'wrong' }, { 'x-p2p-swarm-token': '' }] as Record<string, string>[]) {
      const r = await send(`${proxy.url}/v1/blobs/${digest}/torrent?repo=drill/app`, { headers: { ...headers, authorization: AUTH } });
      checks++;
      expect(r.status).toBe(401);
      expect(r.text).not.toContain('pieces');
    }
    const ok = await send(`${proxy.url}/v1/blobs/${digest}/torrent?repo=drill/app`, {
      headers: { 'x-p2p-swarm-token': SWARM, authorization: AUTH },
    });
    expect(ok.status).toBe(200);
    // The relay (blob bytes while the proxy fetches) is guarded the same way: token and the
    // client's own registry credentials, checked at the origin even though the proxy has the blob.
    for (const headers of [
      { authorization: AUTH },
      { 'x-p2p-swarm-token': 'wrong', authorization: AUTH },
      { 'x-p2p-swarm-token': SWARM },
      { 'x-p2p-swarm-token': SWARM, authorization: `Basic ${Buffer.from('puller:wrong').toString('base64')}` },
    ] as Record<string, string>[]) {
      const r = await send(`${proxy.url}/v1/blobs/${digest}?repo=drill/app`, { headers });
      checks++;
      expect(r.status, JSON.stringify(Object.keys(headers))).toBe(401);
      expect(r.bytes).toBeLessThan(1024);
    }
    const relayed = await send(`${proxy.url}/v1/blobs/${digest}?repo=drill/app`, {
      headers: { 'x-p2p-swarm-token': SWARM, authorization: AUTH, range: 'bytes=10-' },
    });
    expect(relayed.status).toBe(206);
    expect(relayed.bytes).toBe(c.image.layers[0].size - 10);

    const before = sample(await metrics(tracker), 'p2p_tracker_requests_total', 'result="refused_token"');
    const infoHash = '%12'.repeat(20);
    const peerId = '-XX0001-'.padEnd(20, 'a');
    for (const token of ['', '&token=wrong', `&token=${SWARM}x`]) {
      const r = await send(
        `${tracker.url}/announce?info_hash=${infoHash}&peer_id=${peerId}&port=6881&uploaded=0&downloaded=0&left=0&compact=1${token}`,
      );
      checks++;
      expect(r.text).toContain('failure reason');
      expect(r.text).not.toContain('peers');
    }
    const after = sample(await metrics(tracker), 'p2p_tracker_requests_total', 'result="refused_token"');
    expect(after - before).toBe(3);
    const good = await send(
      `${tracker.url}/announce?info_hash=${infoHash}&peer_id=${peerId}&port=6881&uploaded=0&downloaded=0&left=0&compact=1&token=${SWARM}`,
    );
    expect(good.text).not.toContain('swarm token');
  });

  it('oversized headers and bodies are refused with 4xx, and the apps stay up', async () => {
    for (const app of [agent, proxy, tracker]) {
      const hugeHeader = await send(`${app.url}/healthz`, { headers: { 'x-junk': 'a'.repeat(64 * 1024) } }).catch(() => ({
        status: 431,
        bytes: 0,
        text: '',
      }));
      checks++;
      expect(hugeHeader.status).toBe(431);
      const hugeBody = await send(`${app.url}/admin/rate`, {
        method: 'PATCH',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ uploadRate: '1MB', pad: 'x'.repeat(2 * MB) }),
      }).catch(() => ({ status: 413, bytes: 0, text: '' }));
      checks++;
      expect(hugeBody.status).toBe(413);
      expect((await get(`${app.url}/healthz`)).status).toBe(200);
    }
    const r = await send(`${agent.url}/v2/drill/app/manifests/v1`, {
      headers: { authorization: AUTH, 'x-junk': 'b'.repeat(64 * 1024) },
    }).catch(() => ({ status: 431, bytes: 0, text: '' }));
    checks++;
    expect(r.status).toBe(431);
  });
});
