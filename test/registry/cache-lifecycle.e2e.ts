import { once } from 'node:events';
import { createServer, get as httpGet, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, tempDir, type AppProcess } from '../support/app-process.js';
import { OciLayout, pushImage, skopeoPull, type BuiltImage } from '../support/oci-image.js';
import { freePort, startOriginRegistry, waitFor, type OriginRegistry } from '../support/origin-registry.js';
import { basic, dirSummary, metric } from './helpers.js';

const CREDS = 'bob:pw';
const AUTH = basic('bob', 'pw');

/** A test double in front of the registry that flips one byte in GET responses of the chosen blob digests. */
async function startTamperingProxy(target: string, corrupt: Set<string>): Promise<{ url: string; close(): Promise<void> }> {
  const t = new URL(target);
  const server: Server = createServer((req, res) => {
    const up = httpRequest({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      const digest = /\/blobs\/(sha256:[a-f0-9]{64})$/.exec(req.url ?? '')?.[1];
      let flipped = !(req.method === 'GET' && digest && corrupt.has(digest));
      upRes.on('data', (chunk: Buffer) => {
        if (!flipped && chunk.length > 0) {
          chunk = Buffer.from(chunk);
          chunk[chunk.length - 1] ^= 0xff;
          flipped = true;
        }
        res.write(chunk);
      });
      upRes.on('end', () => res.end());
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

async function diskBytes(dir: string): Promise<number> {
  let total = 0;
  for (const f of await readdir(dir)) total += (await stat(join(dir, f))).size;
  return total;
}

describe('agent blob cache: restart, quota, verification, failures', () => {
  let dir: string;
  let origin: OriginRegistry;
  let layout: OciLayout;
  let image: BuiltImage;
  let quotaImage: BuiltImage;
  const agents: AppProcess[] = [];
  const closers: (() => Promise<void>)[] = [];

  const start = async (config: Record<string, unknown>) => {
    const a = await startApp('agent', config, { dir });
    agents.push(a);
    return a;
  };

  beforeAll(async () => {
    dir = await tempDir('p2p-cache-');
    origin = await startOriginRegistry({ auth: { username: 'bob', password: 'pw' } });
    layout = new OciLayout(join(dir, 'layout'));
    image = await layout.addImage('v1', [4096, 2 * 2 ** 20, 30 * 2 ** 20]);
    quotaImage = await layout.addImage('quota', [3 * 2 ** 20, 3 * 2 ** 20, 3 * 2 ** 20, 3 * 2 ** 20]);
    await pushImage(layout.dir, 'v1', { host: origin.host, repo: 'lib/app', creds: CREDS });
    await pushImage(layout.dir, 'quota', { host: origin.host, repo: 'lib/quota', tag: 'v1', creds: CREDS });
  });

  afterAll(async () => {
    for (const a of agents) await a.stop();
    for (const c of closers) await c();
    await origin?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps the cache across a restart and removes leftover temp files', async () => {
    const data = join(dir, 'restart-data');
    const first = await start({ registry: origin.url, dataDir: data });
    const r1 = await skopeoPull(`127.0.0.1:${first.port}/lib/app:v1`, join(dir, 'r1'), { creds: CREDS });
    expect(r1.ok, r1.stderr).toBe(true);
    await first.stop();
    const gets = image.layers.map((l) => origin.blobGets(l.digest));
    expect(gets).toEqual([1, 1, 1]);
    const leftover = join(data, 'tmp', `${'a'.repeat(64)}.dead.part`);
    await writeFile(leftover, 'half a blob');

    const second = await start({ registry: origin.url, dataDir: data });
    await expect(stat(leftover)).rejects.toThrow();
    const r2 = await skopeoPull(`127.0.0.1:${second.port}/lib/app:v1`, join(dir, 'r2'), { creds: CREDS });
    expect(r2.ok, r2.stderr).toBe(true);
    expect(await dirSummary(join(dir, 'r2'))).toEqual(await dirSummary(join(dir, 'r1')));
    expect(image.layers.map((l) => origin.blobGets(l.digest))).toEqual(gets);
    for (const l of image.layers) expect((await stat(join(data, 'blobs', 'sha256', l.digest.slice(7)))).size).toBe(l.size);
  });

  it('evicts least recently used blobs to stay under the quota', async () => {
    const data = join(dir, 'quota-data');
    const agent = await start({
      registry: origin.url,
      dataDir: data,
      cacheMaxBytes: 8 * 2 ** 20,
      cacheHighWatermark: 0.9,
      cacheLowWatermark: 0.5,
    });
    const r = await skopeoPull(`127.0.0.1:${agent.port}/lib/quota:v1`, join(dir, 'q1'), { creds: CREDS });
    expect(r.ok, r.stderr).toBe(true);
    const blobs = join(data, 'blobs', 'sha256');
    await waitFor(async () => (await diskBytes(blobs)) <= 0.9 * 8 * 2 ** 20, 5000, 'eviction');
    const m = await (await fetch(`${agent.url}/metrics`)).text();
    expect(metric(m, 'p2p_cache_evictions_total', '')).toBeGreaterThanOrEqual(1);
    expect(metric(m, 'p2p_cache_bytes', '')).toBe(await diskBytes(blobs));
    // Evicted blobs are fetched again on demand.
    const again = await skopeoPull(`127.0.0.1:${agent.port}/lib/quota:v1`, join(dir, 'q2'), { creds: CREDS });
    expect(again.ok, again.stderr).toBe(true);
    for (const l of quotaImage.layers) expect((await dirSummary(join(dir, 'q2'))).files[l.digest.slice(7)]).toBe(l.digest);
  });

  it('fails the client and caches nothing when the origin serves wrong bytes', async () => {
    const corrupt = new Set([image.layers[2].digest]);
    const proxy = await startTamperingProxy(origin.url, corrupt);
    closers.push(() => proxy.close());
    const data = join(dir, 'tamper-data');
    const agent = await start({ registry: proxy.url, dataDir: data });
    const target = image.layers[2];
    const res = await fetch(`${agent.url}/v2/lib/app/blobs/${target.digest}`, { headers: { authorization: AUTH } });
    await expect(res.arrayBuffer()).rejects.toThrow();
    const pull = await skopeoPull(`127.0.0.1:${agent.port}/lib/app:v1`, join(dir, 'tampered'), { creds: CREDS });
    expect(pull.ok).toBe(false);
    await waitFor(async () => (await readdir(join(data, 'tmp'))).length === 0, 5000, 'temp files removed');
    await expect(stat(join(data, 'blobs', 'sha256', target.digest.slice(7)))).rejects.toThrow();
    // The untampered blobs were cached; once the origin behaves the pull succeeds.
    expect((await stat(join(data, 'blobs', 'sha256', image.layers[1].digest.slice(7)))).size).toBe(image.layers[1].size);
    corrupt.clear();
    const ok = await skopeoPull(`127.0.0.1:${agent.port}/lib/app:v1`, join(dir, 'untampered'), { creds: CREDS });
    expect(ok.ok, ok.stderr).toBe(true);
    expect((await dirSummary(join(dir, 'untampered'))).files[target.digest.slice(7)]).toBe(target.digest);
  });

  it('a client that disconnects does not break the shared fetch another client reads', async () => {
    const agent = await start({ registry: origin.url, dataDir: join(dir, 'disconnect-data'), downloadRate: '60MB' });
    const target = image.layers[2];
    const url = `${agent.url}/v2/lib/app/blobs/${target.digest}`;
    // The quitter reads its first bytes, then its socket is destroyed: a real disconnect.
    const quitter = httpGet(url, { headers: { authorization: AUTH } });
    const [firstResponse] = (await once(quitter, 'response')) as [IncomingMessage];
    await once(firstResponse, 'data');
    const second = fetch(url, { headers: { authorization: AUTH } }).then(async (r) => Buffer.from(await r.arrayBuffer()));
    quitter.destroy();
    const body = await second;
    expect(body.equals(await readFile(layout.blobPath(target.digest)))).toBe(true);
  });

  it('answers 503 with an OCI body when the origin is unreachable', async () => {
    const agent = await start({
      registry: `http://127.0.0.1:${await freePort()}`,
      dataDir: join(dir, 'down-data'),
      originConnectTimeout: '2s',
    });
    for (const path of [`/v2/lib/app/blobs/${image.layers[0].digest}`, '/v2/lib/app/manifests/v1', '/v2/lib/app/tags/list', '/v2/']) {
      const res = await fetch(`${agent.url}${path}`, { headers: { authorization: AUTH } });
      expect(res.status, path).toBe(503);
      expect(((await res.json()) as { errors: { code: string }[] }).errors[0].code).toBe('UNAVAILABLE');
    }
    expect((await fetch(`${agent.url}/healthz`)).status).toBe(200);
  });
});
