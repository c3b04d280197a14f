import { randomBytes } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import bencode from 'bencode';
import { afterEach, describe, expect, it } from 'vitest';
import { TrackerServer, type TrackerResult, type TrackerServerOptions } from './tracker-server.js';

const enc = (b: Buffer) => [...b].map((x) => `%${x.toString(16).padStart(2, '0')}`).join('');

describe(TrackerServer.name, () => {
  let http: Server | undefined;
  let tracker: TrackerServer | undefined;
  const results: TrackerResult[] = [];

  afterEach(async () => {
    results.length = 0;
    await tracker?.close();
    await new Promise((r) => (http ? http.close(r) : r(undefined)));
  });

  async function start(options: Partial<TrackerServerOptions>): Promise<string> {
    tracker = new TrackerServer({ intervalSeconds: 60, peersCacheLength: 100, onResult: (_a, r) => results.push(r), ...options });
    const t = tracker;
    http = createServer((req, res) => t.handle(req.url!.startsWith('/scrape') ? 'scrape' : 'announce', req, res));
    await new Promise<void>((r) => http!.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  }

  async function announce(base: string, infoHash: string, query = ''): Promise<Record<string, unknown>> {
    const url = `${base}/announce?info_hash=${enc(Buffer.from(infoHash, 'hex'))}&peer_id=${enc(randomBytes(20))}&port=6881&left=1&compact=1${query}`;
    const res = await fetch(url);
    return bencode.decode(new Uint8Array(await res.arrayBuffer())) as Record<string, unknown>;
  }

  it('checks the token in constant time and refuses announces without it', async () => {
    const base = await start({ token: 's3cret' });
    expect(tracker!.tokenOk('s3cret')).toBe(true);
    expect(tracker!.tokenOk('s3cre')).toBe(false);
    expect(tracker!.tokenOk(undefined)).toBe(false);
    const hash = randomBytes(20).toString('hex');
    expect((await announce(base, hash))['failure reason']).toBeDefined();
    expect((await announce(base, hash, '&token=s3cret'))['failure reason']).toBeUndefined();
    expect(results).toEqual(['refused_token', 'ok']);
  });

  it('refuses clients over their limit without touching swarms', async () => {
    let allowed = 1;
    const base = await start({ allowClient: () => allowed-- > 0 });
    const hash = randomBytes(20).toString('hex');
    await announce(base, hash);
    expect((await announce(base, hash))['failure reason']).toBeDefined();
    expect(results).toEqual(['ok', 'rate_limited']);
    expect(tracker!.stats()).toMatchObject({ swarms: 1, peers: 1 });
  });

  it('tells its log hooks the infoHash and the peer: accepted announces, and refusals once the hash is parsed (issue #14 item 4)', async () => {
    const announces: unknown[] = [];
    const warnings: unknown[] = [];
    const base = await start({
      token: 's3cret',
      onAnnounce: (a) => announces.push(a),
      onWarning: (err, about) => warnings.push({ reason: err.message, ...about }),
    });
    const hash = randomBytes(20).toString('hex');
    await announce(base, hash, '&token=s3cret');
    await announce(base, hash, '&token=wrong');
    expect(announces).toEqual([{ infoHash: hash, peer: '127.0.0.1:6881', event: expect.any(String), left: 1 }]);
    expect(warnings).toEqual([{ reason: 'swarm token missing or wrong', peer: '127.0.0.1', infoHash: hash }]);
  });

  it('reaps idle swarms', async () => {
    const base = await start({ idleSwarmSeconds: 30 });
    const hash = randomBytes(20).toString('hex');
    expect((await announce(base, hash))['failure reason']).toBeUndefined();
    expect(results).toEqual(['ok']);
    expect(tracker!.reapIdleSwarms(Date.now() + 10_000)).toBe(0);
    expect(tracker!.reapIdleSwarms(Date.now() + 31_000)).toBe(1);
    expect(tracker!.stats()).toEqual({ swarms: 0, peers: 0 });
  });

  /** An announce sent from `localAddress` (a loopback alias), non-compact so peer ids show. */
  function announceFrom(
    base: string,
    localAddress: string,
    q: { infoHash: string; peerId: Buffer; port: number; event?: string },
  ): Promise<Record<string, unknown>> {
    const url = `${base}/announce?info_hash=${enc(Buffer.from(q.infoHash, 'hex'))}&peer_id=${enc(q.peerId)}&port=${q.port}&left=1&compact=0&event=${q.event ?? 'started'}`;
    return new Promise((resolve, reject) => {
      const req = request(url, { localAddress }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(bencode.decode(Buffer.concat(chunks)) as Record<string, unknown>));
      });
      req.on('error', reject);
      req.end();
    });
  }
  const listed = (answer: Record<string, unknown>) =>
    (answer['peers'] as { ip: Uint8Array; port: number }[]).map((p) => `${Buffer.from(p.ip).toString()}:${p.port}`).sort();

  it('binds a peer entry to its source address: the same peer id from another address neither hijacks nor stops it (issue #12 item 10)', async () => {
    const base = await start({});
    const hash = randomBytes(20).toString('hex');
    const victim = randomBytes(20);
    await announceFrom(base, '127.0.0.2', { infoHash: hash, peerId: victim, port: 7001 });
    await announceFrom(base, '127.0.0.3', { infoHash: hash, peerId: victim, port: 7002 });
    await announceFrom(base, '127.0.0.3', { infoHash: hash, peerId: victim, port: 7001, event: 'stopped' });
    await announceFrom(base, '127.0.0.3', { infoHash: hash, peerId: victim, port: 7002, event: 'stopped' });
    const seen = await announceFrom(base, '127.0.0.4', { infoHash: hash, peerId: randomBytes(20), port: 7003 });
    expect(listed(seen)).toEqual(['127.0.0.2:7001']);
    expect(results).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
  });
});
