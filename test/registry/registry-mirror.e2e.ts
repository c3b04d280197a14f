import { connect, createServer, type Server } from 'node:net';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, tempDir, type AppProcess } from '../support/app-process.js';
import { OciLayout, pushImage, skopeoPull, type BuiltImage } from '../support/oci-image.js';
import { startOriginRegistry, type OriginRegistry } from '../support/origin-registry.js';
import { basic, dirSummary, metric } from './helpers.js';
import { ociErrorCode } from '../support/oci-error-body.js';

const CREDS = 'alice:s3cret';
const AUTH = basic('alice', 's3cret');

describe('agent registry mirror (docker-registry origin, skopeo client)', () => {
  let dir: string;
  let origin: OriginRegistry;
  let agent: AppProcess;
  let layout: OciLayout;
  let image: BuiltImage;
  let multi: BuiltImage;
  let agentHost: string;

  beforeAll(async () => {
    dir = await tempDir('p2p-mirror-');
    origin = await startOriginRegistry({ auth: { username: 'alice', password: 's3cret' } });
    layout = new OciLayout(join(dir, 'layout'));
    image = await layout.addImage('v1', [2048, 5 * 2 ** 20, 100 * 2 ** 20]);
    multi = await layout.addIndex('multi', [
      { os: 'linux', architecture: 'amd64', layerSizes: [2 ** 20, 65_536] },
      { os: 'linux', architecture: 'arm64', layerSizes: [2 ** 20] },
    ]);
    await layout.addImage('small', [3 * 2 ** 20, 12 * 2 ** 20]);
    await pushImage(layout.dir, 'v1', { host: origin.host, repo: 'team/app/web', creds: CREDS });
    await pushImage(layout.dir, 'multi', { host: origin.host, repo: 'team/multi', tag: 'v1', creds: CREDS });
    await pushImage(layout.dir, 'small', { host: origin.host, repo: 'conc/img', tag: 'v1', creds: CREDS });
    agent = await startApp('agent', { registry: origin.url, dataDir: join(dir, 'data') }, { dir });
    agentHost = `127.0.0.1:${agent.port}`;
  });

  afterAll(async () => {
    if (process.env.SHOW_AGENT_LOG)
      console.log(
        agent
          ?.output()
          .split('\n')
          .filter((l) => /error|warn/i.test(l))
          .join('\n'),
      );
    await agent?.stop();
    await origin?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('skopeo copy through the agent gives the same manifest and layers as a direct copy; the second pull comes from cache', async () => {
    const direct = await skopeoPull(`${origin.host}/team/app/web:v1`, join(dir, 'direct'), { creds: CREDS });
    expect(direct.ok, direct.stderr).toBe(true);
    const before = image.layers.map((l) => origin.blobGets(l.digest));

    const viaAgent = await skopeoPull(`${agentHost}/team/app/web:v1`, join(dir, 'via-agent'), { creds: CREDS });
    expect(viaAgent.ok, viaAgent.stderr).toBe(true);
    const a = await dirSummary(join(dir, 'direct'));
    const b = await dirSummary(join(dir, 'via-agent'));
    expect(b).toEqual(a);
    expect(b.manifest).toBe(image.digest);
    for (const l of image.layers) expect(b.files[l.digest.slice(7)]).toBe(l.digest);
    expect(image.layers.map((l) => origin.blobGets(l.digest))).toEqual(before.map((n) => n + 1));

    const again = await skopeoPull(`${agentHost}/team/app/web:v1`, join(dir, 'via-agent-2'), { creds: CREDS });
    expect(again.ok, again.stderr).toBe(true);
    expect(await dirSummary(join(dir, 'via-agent-2'))).toEqual(a);
    expect(image.layers.map((l) => origin.blobGets(l.digest))).toEqual(before.map((n) => n + 1));

    const metrics = await (await fetch(`${agent.url}/metrics`)).text();
    expect(metric(metrics, 'p2p_blob_bytes_served_total', 'cache="hit"')).toBeGreaterThanOrEqual(100 * 2 ** 20);
    expect(metric(metrics, 'p2p_blob_bytes_served_total', 'cache="miss"')).toBeGreaterThanOrEqual(100 * 2 ** 20);
    expect(metric(metrics, 'p2p_cache_entries', '')).toBeGreaterThanOrEqual(4);
    expect(metrics).toMatch(/p2p_blob_fetch_duration_seconds_count\{[^}]*result="ok"[^}]*\} [1-9]/);
  });

  it('copies a multi-arch index with every platform', async () => {
    const out = join(dir, 'multi-out');
    const r = await skopeoPull(`${agentHost}/team/multi:v1`, out, { creds: CREDS, all: true });
    expect(r.ok, r.stderr).toBe(true);
    const s = await dirSummary(out);
    expect(s.manifest).toBe(multi.digest);
    for (const l of multi.layers) expect(s.files[l.digest.slice(7)]).toBe(l.digest);
  });

  it('answers manifest HEAD/GET with the right digest, type and length, passing Accept through', async () => {
    const accept = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';
    const head = await fetch(`${agent.url}/v2/team/multi/manifests/v1`, { method: 'HEAD', headers: { authorization: AUTH, accept } });
    expect(head.status).toBe(200);
    expect(head.headers.get('docker-content-digest')).toBe(multi.digest);
    expect(head.headers.get('content-type')).toBe('application/vnd.oci.image.index.v1+json');
    const raw = await readFile(layout.blobPath(multi.digest));
    expect(Number(head.headers.get('content-length'))).toBe(raw.length);
    const get = await fetch(`${agent.url}/v2/team/multi/manifests/${multi.digest}`, { headers: { authorization: AUTH, accept } });
    expect(get.status).toBe(200);
    expect(Buffer.from(await get.arrayBuffer())).toEqual(raw);
    expect(get.headers.get('docker-content-digest')).toBe(multi.digest);
    const missing = await fetch(`${agent.url}/v2/team/multi/manifests/nope`, { headers: { authorization: AUTH } });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { errors: { code: string }[] }).errors[0].code).toBe('MANIFEST_UNKNOWN');
  });

  it('refuses missing or wrong credentials with a Basic challenge and not one blob byte, even for a cached blob', async () => {
    const layer = image.layers[1];
    const url = `${agent.url}/v2/team/app/web/blobs/${layer.digest}`;
    const ok = await fetch(url, { headers: { authorization: AUTH } });
    expect(ok.status).toBe(200);
    expect((await ok.arrayBuffer()).byteLength).toBe(layer.size);
    const attempts: Record<string, string>[] = [
      {},
      { authorization: basic('alice', 'wrong') },
      { authorization: basic('mallory', 's3cret') },
    ];
    for (const headers of attempts) {
      const res = await fetch(url, { headers });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
      const body = Buffer.from(await res.arrayBuffer());
      expect(body.length).toBeLessThan(1000);
      expect(ociErrorCode(body)).toBe('UNAUTHORIZED');
      const head = await fetch(url, { method: 'HEAD', headers });
      expect(head.status).toBe(401);
    }
    const ping = await fetch(`${agent.url}/v2/`);
    expect(ping.status).toBe(401);
    expect(ping.headers.get('www-authenticate')).toMatch(/^Basic /);
    expect((await fetch(`${agent.url}/v2/`, { headers: { authorization: AUTH } })).status).toBe(200);
  });

  it('answers Range requests byte-exactly, from the cache and from a fill in progress', async () => {
    const cached = image.layers[1];
    const bytes = await readFile(layout.blobPath(cached.digest));
    const url = `${agent.url}/v2/team/app/web/blobs/${cached.digest}`;
    const cases: [string, number, number][] = [
      ['bytes=0-99', 0, 99],
      ['bytes=1000-2000', 1000, 2000],
      [`bytes=-500`, bytes.length - 500, bytes.length - 1],
      [`bytes=${bytes.length - 10}-`, bytes.length - 10, bytes.length - 1],
      [`bytes=100-${bytes.length * 2}`, 100, bytes.length - 1],
    ];
    for (const [range, start, end] of cases) {
      const res = await fetch(url, { headers: { authorization: AUTH, range } });
      expect(res.status, range).toBe(206);
      expect(res.headers.get('content-range')).toBe(`bytes ${start}-${end}/${bytes.length}`);
      expect(Buffer.from(await res.arrayBuffer()).equals(bytes.subarray(start, end + 1)), range).toBe(true);
    }
    const bad = await fetch(url, { headers: { authorization: AUTH, range: `bytes=${bytes.length}-` } });
    expect(bad.status).toBe(416);
    expect(bad.headers.get('content-range')).toBe(`bytes */${bytes.length}`);

    // Cold blob: concurrent ranges tail one shared fill.
    const multiLayer = multi.layers[0];
    const cold = await readFile(layout.blobPath(multiLayer.digest));
    const coldUrl = `${agent.url}/v2/team/multi/blobs/${multiLayer.digest}`;
    const getsBefore = origin.blobGets(multiLayer.digest);
    const ranges: [number, number][] = [
      [0, 10],
      [500_000, 700_000],
      [cold.length - 1, cold.length - 1],
    ];
    const parts = await Promise.all(
      ranges.map(async ([s, e]) =>
        Buffer.from(await (await fetch(coldUrl, { headers: { authorization: AUTH, range: `bytes=${s}-${e}` } })).arrayBuffer()),
      ),
    );
    ranges.forEach(([s, e], i) => expect(parts[i].equals(cold.subarray(s, e + 1))).toBe(true));
    expect(origin.blobGets(multiLayer.digest) - getsBefore).toBeLessThanOrEqual(1);
  });

  it('10 concurrent pulls of one image: each blob leaves the origin once', async () => {
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => skopeoPull(`${agentHost}/conc/img:v1`, join(dir, `conc-${i}`), { creds: CREDS })),
    );
    for (const r of results) expect(r.ok, r.stderr).toBe(true);
    const first = await dirSummary(join(dir, 'conc-0'));
    for (let i = 1; i < 10; i++) expect(await dirSummary(join(dir, `conc-${i}`))).toEqual(first);
    const manifest = JSON.parse(await readFile(join(dir, 'conc-0', 'manifest.json'), 'utf8')) as {
      config: { digest: string };
      layers: { digest: string }[];
    };
    for (const d of [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) expect(origin.blobGets(d), d).toBe(1);
  });

  it('passes other /v2/ calls through: a push via the agent and tags/list', async () => {
    await pushImage(layout.dir, 'small', { host: agentHost, repo: 'pushed/via/agent', tag: 'v9', creds: CREDS });
    const tags = await fetch(`${agent.url}/v2/pushed/via/agent/tags/list`, { headers: { authorization: AUTH } });
    expect(tags.status).toBe(200);
    expect(await tags.json()).toEqual({ name: 'pushed/via/agent', tags: ['v9'] });
    const direct = await fetch(`${origin.url}/v2/pushed/via/agent/tags/list`, { headers: { authorization: AUTH } });
    expect(await direct.json()).toEqual({ name: 'pushed/via/agent', tags: ['v9'] });
    expect((await fetch(`${agent.url}/v2/pushed/via/agent/tags/list`)).status).toBe(401);
  });

  it('answers invalid input with 400 OCI errors and refuses unknown ?ns= hosts without contacting them', async () => {
    const code = async (path: string, status: number) => {
      const res = await fetch(`${agent.url}${path}`, { headers: { authorization: AUTH } });
      expect(res.status, path).toBe(status);
      return ((await res.json()) as { errors: { code: string }[] }).errors[0].code;
    };
    expect(await code(`/v2/Bad_Name/blobs/${image.layers[0].digest}`, 400)).toBe('NAME_INVALID');
    expect(await code('/v2/team/app/web/blobs/sha256:1234', 400)).toBe('DIGEST_INVALID');
    expect(await code('/v2/team/app/web/blobs/md5:d41d8cd98f00b204e9800998ecf8427e', 400)).toBe('DIGEST_INVALID');
    expect(await code('/v2/team/app/web/manifests/-bad-tag', 400)).toBe('MANIFEST_INVALID');
    expect(await code(`/v2/team/app/web/blobs/sha256:${'0'.repeat(64)}`, 404)).toBe('BLOB_UNKNOWN');

    let connections = 0;
    const sentinel: Server = createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((r) => sentinel.listen(0, '127.0.0.1', r));
    const port = (sentinel.address() as { port: number }).port;
    try {
      expect(await code(`/v2/team/app/web/manifests/v1?ns=127.0.0.1%3A${port}`, 404)).toBe('NAME_UNKNOWN');
      expect(await code(`/v2/team/app/web/blobs/${image.layers[0].digest}?ns=127.0.0.1%3A${port}`, 404)).toBe('NAME_UNKNOWN');
      expect(connections).toBe(0);
    } finally {
      sentinel.close();
    }
    const viaNs = await fetch(`${agent.url}/v2/team/app/web/manifests/v1?ns=${encodeURIComponent(origin.host)}`, {
      headers: { authorization: AUTH, accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    expect(viaNs.status).toBe(200);
    expect(viaNs.headers.get('docker-content-digest')).toBe(image.digest);
  });

  it('shrugs off a TLS ClientHello on the plain port', async () => {
    const hello = Buffer.from('160301002e0100002a0303' + '00'.repeat(32) + '000002002f0100', 'hex');
    await new Promise<void>((resolve, reject) => {
      const s = connect(agent.port, '127.0.0.1', () => s.write(hello));
      s.on('data', () => undefined);
      s.on('close', () => resolve());
      s.on('error', () => resolve());
      setTimeout(() => reject(new Error('socket not closed')), 5000).unref();
    });
    expect((await fetch(`${agent.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${agent.url}/v2/`, { headers: { authorization: AUTH } })).status).toBe(200);
  });
});
