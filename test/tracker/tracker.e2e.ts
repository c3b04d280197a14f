import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import bencode from 'bencode';
import { Client } from 'bittorrent-tracker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, tempDir, type AppProcess } from '../support/app-process.js';

const SWARM_TOKEN = 'swarm-token-for-tests';
const ADMIN_TOKEN = 'admin-token-for-tests';

/** Raw HTTP announce as a BitTorrent client sends it (binary info_hash/peer_id, %-encoded). */
async function announce(
  base: string,
  infoHash: string,
  opts: { token?: string; port?: number; peerId?: Buffer } = {},
): Promise<Record<string, unknown>> {
  const enc = (b: Buffer) => [...b].map((x) => `%${x.toString(16).padStart(2, '0')}`).join('');
  const q = [
    `info_hash=${enc(Buffer.from(infoHash, 'hex'))}`,
    `peer_id=${enc(opts.peerId ?? randomBytes(20))}`,
    `port=${opts.port ?? 6881}`,
    'uploaded=0',
    'downloaded=0',
    'left=100',
    'compact=1',
    'event=started',
  ];
  if (opts.token) q.push(`token=${encodeURIComponent(opts.token)}`);
  const res = await fetch(`${base}/announce?${q.join('&')}`);
  expect(res.status).toBe(200);
  return decode(new Uint8Array(await res.arrayBuffer()));
}

function decode(buf: Uint8Array): Record<string, unknown> {
  const out = bencode.decode(buf) as Record<string, unknown>;
  const reason = out['failure reason'];
  return reason instanceof Uint8Array ? { ...out, 'failure reason': Buffer.from(reason).toString() } : out;
}

/** Sum of the series of `name` whose labels include every fragment given. */
async function metric(base: string, name: string, ...labels: string[]): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(`p2p_${name}{`) && labels.every((f) => l.includes(f)))
    .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One bittorrent-tracker Client announce: resolves with 'update' or the warning/error message. */
function clientAnnounce(
  url: string,
  infoHash: string,
  port: number,
): Promise<{ ok: boolean; message?: string; client: Client; peers: string[] }> {
  const client = new Client({ infoHash, peerId: randomBytes(20).toString('hex'), announce: [url], port });
  const peers: string[] = [];
  client.on('peer', (p: string) => peers.push(p));
  return new Promise((resolve) => {
    client.once('update', () => resolve({ ok: true, client, peers }));
    client.once('warning', (err: Error) => resolve({ ok: false, message: err.message, client, peers }));
    client.once('error', (err: Error) => resolve({ ok: false, message: err.message, client, peers }));
    client.start();
  });
}

describe('tracker app', () => {
  let dir: string;
  let tracker: AppProcess;
  let quick: AppProcess;
  const clients: Client[] = [];

  beforeAll(async () => {
    dir = await tempDir('p2p-tracker-');
    await writeFile(join(dir, 'swarm-token'), `${SWARM_TOKEN}\n`);
    await writeFile(join(dir, 'admin-token'), `${ADMIN_TOKEN}\n`);
    const common = { swarmTokenFile: join(dir, 'swarm-token'), adminTokenFile: join(dir, 'admin-token') };
    tracker = await startApp('tracker', { ...common, announceRate: 5, announceInterval: '5s' }, { dir });
    quick = await startApp('tracker', { ...common, announceInterval: '1s', swarmIdleTimeout: '2s' }, { dir });
  });

  afterAll(async () => {
    for (const c of clients) c.destroy();
    await Promise.all([tracker?.stop(), quick?.stop()]);
    await rm(dir, { recursive: true, force: true });
  });

  it('is ready with a token configured (the readiness scrape carries it)', async () => {
    const res = await fetch(`${tracker.url}/readyz`);
    expect(res.status).toBe(200);
  });

  it('accepts announces with the swarm token and hands out peers; refuses them without', async () => {
    const infoHash = randomBytes(20).toString('hex');
    const url = `${tracker.url}/announce?token=${SWARM_TOKEN}`;
    const a = await clientAnnounce(url, infoHash, 7001);
    clients.push(a.client);
    expect(a).toMatchObject({ ok: true });
    const b = await clientAnnounce(url, infoHash, 7002);
    clients.push(b.client);
    expect(b.ok).toBe(true);
    await until('peer from tracker', () => Promise.resolve(b.peers.includes('127.0.0.1:7001') ? true : undefined));

    const none = await clientAnnounce(`${tracker.url}/announce`, infoHash, 7003);
    clients.push(none.client);
    expect(none).toMatchObject({ ok: false, message: expect.stringMatching(/swarm token/) });
    const wrong = await clientAnnounce(`${tracker.url}/announce?token=nope`, infoHash, 7004);
    clients.push(wrong.client);
    expect(wrong.ok).toBe(false);

    expect(await metric(tracker.url, 'tracker_swarms')).toBeGreaterThanOrEqual(1);
    expect(await metric(tracker.url, 'tracker_peers')).toBeGreaterThanOrEqual(2);
    expect(await metric(tracker.url, 'tracker_requests_total', 'action="announce"', 'result="ok"')).toBeGreaterThanOrEqual(2);
    expect(await metric(tracker.url, 'tracker_requests_total', 'action="announce"', 'result="refused_token"')).toBeGreaterThanOrEqual(2);
  });

  it('needs the token for scrapes too', async () => {
    const bad = decode(new Uint8Array(await (await fetch(`${tracker.url}/scrape`)).arrayBuffer()));
    expect(bad['failure reason']).toMatch(/swarm token/);
    const good = decode(new Uint8Array(await (await fetch(`${tracker.url}/scrape?token=${SWARM_TOKEN}`)).arrayBuffer()));
    expect(good['files']).toBeDefined();
  });

  it('answers malformed announces with a failure reason and counts them', async () => {
    const res = await fetch(`${tracker.url}/announce?token=${SWARM_TOKEN}&info_hash=short`);
    expect(res.status).toBe(200);
    expect(decode(new Uint8Array(await res.arrayBuffer()))['failure reason']).toMatch(/info_hash/);
    expect(await metric(tracker.url, 'tracker_requests_total', 'action="announce"', 'result="malformed"')).toBeGreaterThanOrEqual(1);
  });

  it('survives hostile announce and scrape queries: every one answered with a failure reason, none crashes it', async () => {
    const hash = `info_hash=${'%ab'.repeat(20)}`;
    const peer = `peer_id=${'%cd'.repeat(20)}`;
    const hostile = [
      `/announce?${hash}`,
      `/announce?${hash}&${peer}`,
      `/announce?${hash}&${peer}&port=0`,
      `/announce?${hash}&${peer}&port=99999999999999999999`,
      `/announce?${hash}&${peer}&port=1&left=-5`,
      `/announce?${hash}&${peer}&port=1&numwant=abc`,
      `/announce?${hash}&${peer}&port=1&event=%`,
      `/announce?info_hash=%&${peer}&port=1`,
      `/announce?info_hash=${'%ab'.repeat(21)}&${peer}&port=1`,
      `/announce?info_hash=${'\u00e9'.repeat(20)}&${peer}&port=1`,
      `/announce?&&&=&==&${hash}`,
      `/scrape?info_hash=%zz`,
      `/scrape?info_hash=abc`,
    ];
    for (const path of hostile) {
      const res = await fetch(`${tracker.url}${path}&token=${SWARM_TOKEN}`);
      expect(res.status, path).toBe(200);
      expect(decode(new Uint8Array(await res.arrayBuffer()))['failure reason'], path).toMatch(/invalid/);
    }
    // Only GET is the protocol; other methods fall through to the app's router (404), not a crash.
    expect((await fetch(`${tracker.url}/announce?${hash}`, { method: 'POST' })).status).toBe(404);
    expect((await fetch(`${tracker.url}/healthz`)).status).toBe(200);
  });

  it('limits announces per client to announceRate, and PATCH /admin/rate changes the limit live', async () => {
    const infoHash = randomBytes(20).toString('hex');
    // Drain the bucket left by earlier tests, then flood: 40 announces with a 5/s limit.
    const flood = async () => {
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => announce(tracker.url, infoHash, { token: SWARM_TOKEN, port: 8000 + i })),
      );
      return results.filter((r) => typeof r['failure reason'] === 'string' && /too many announces/.test(r['failure reason'])).length;
    };
    const limited = await flood();
    expect(limited).toBeGreaterThanOrEqual(30);
    expect(await metric(tracker.url, 'tracker_requests_total', 'action="announce"', 'result="rate_limited"')).toBeGreaterThanOrEqual(30);

    const patch = await fetch(`${tracker.url}/admin/rate`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ announceRate: 1000 }),
    });
    expect(patch.status).toBe(200);
    expect(await patch.json()).toMatchObject({ announceRate: 1000 });
    expect(await flood()).toBe(0);
  });

  it('answers an announce with the configured interval and holds the swarm', async () => {
    const infoHash = randomBytes(20).toString('hex');
    const ok = await announce(quick.url, infoHash, { token: SWARM_TOKEN });
    expect(ok['failure reason']).toBeUndefined();
    expect(ok['interval']).toBe(1);
    expect(await metric(quick.url, 'tracker_swarms')).toBe(1);
  });

  it('reaps swarms nobody announced to for swarmIdleTimeout', async () => {
    // The swarm from the previous test goes quiet; 2 s idle timeout, reaper runs every 2 s.
    await until('idle swarm reaped', async () => ((await metric(quick.url, 'tracker_swarms')) === 0 ? true : undefined), 10_000);
    expect(await metric(quick.url, 'tracker_peers')).toBe(0);
  });
});
