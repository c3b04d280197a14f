import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import bencode from 'bencode';
import { afterEach, describe, expect, it } from 'vitest';
import { TrackerServer } from '#tracker';
import {
  announce,
  redactToken,
  TrackerAnnouncer,
  TrackerError,
  type AnnounceParams,
  type TrackerAnnouncerOptions,
} from './tracker-client.js';

const TOKEN = 's3cret-swarm-token';

const servers: Server[] = [];
const trackers: TrackerServer[] = [];
const announcers: TrackerAnnouncer[] = [];

afterEach(async () => {
  await Promise.all(announcers.splice(0).map((a) => a.stop()));
  await Promise.all(trackers.splice(0).map((t) => t.close()));
  await Promise.all(
    servers.splice(0).map((s) => {
      s.closeAllConnections();
      return new Promise((r) => s.close(r));
    }),
  );
});

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void, port = 0, host = '127.0.0.1'): Promise<number> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(port, host, r));
  return (server.address() as AddressInfo).port;
}

/** The real tracker behind node:http, as apps/tracker serves it; returns its announce URL with the token. */
async function startTracker(port = 0, host = '127.0.0.1'): Promise<string> {
  const tracker = new TrackerServer({ intervalSeconds: 60, peersCacheLength: 100, token: TOKEN });
  trackers.push(tracker);
  const bound = await listen((req, res) => tracker.handle(req.url!.startsWith('/scrape') ? 'scrape' : 'announce', req, res), port, host);
  const h = host.includes(':') ? `[${host}]` : host;
  return `http://${h}:${bound}/announce?token=${TOKEN}`;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

async function until(cond: () => boolean, timeoutMs = 4000, state?: () => unknown): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met in time: ${JSON.stringify(state?.())}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function params(infoHash: Buffer, port: number, left = 100, peerId = randomBytes(20)): Omit<AnnounceParams, 'event'> {
  return { infoHash, peerId, port, uploaded: 0, downloaded: 0, left };
}

/** Figures for an announcer: one peer id for its whole life, as a real client keeps. */
function peer(infoHash: Buffer, port: number, left = 100): () => Omit<AnnounceParams, 'event'> {
  const p = params(infoHash, port, left);
  return () => p;
}

function announcer(options: Partial<TrackerAnnouncerOptions> & Pick<TrackerAnnouncerOptions, 'urls' | 'params'>): {
  a: TrackerAnnouncer;
  seen: Set<string>;
} {
  const seen = new Set<string>();
  const a = new TrackerAnnouncer({ onPeers: (peers) => peers.forEach((p) => seen.add(p)), ...options });
  announcers.push(a);
  return { a, seen };
}

describe('announce', () => {
  it('appends to a URL that already carries the token and is understood by the real tracker', async () => {
    const url = await startTracker();
    const hash = randomBytes(20);
    const first = await announce(url, { ...params(hash, 7001), event: 'started' });
    expect(first).toEqual({ interval: 60, peers: [], complete: 0, incomplete: 1 });
    const second = await announce(url, { ...params(hash, 7002, 0), event: 'started', numwant: 10 });
    expect(second).toEqual({ interval: 60, peers: ['127.0.0.1:7001'], complete: 1, incomplete: 1 });
  });

  it('sends every binary byte percent-encoded and the figures asked for', async () => {
    let seen = '';
    const port = await listen((req, res) => {
      seen = req.url!;
      res.end(Buffer.from(bencode.encode({ interval: 5, peers: new Uint8Array(0) })));
    });
    const infoHash = Buffer.from('00ff25262b3d3f20' + 'ab'.repeat(12), 'hex');
    const peerId = Buffer.from('-XX0001-abcdefghijkl');
    await announce(`http://127.0.0.1:${port}/announce?token=abc`, {
      infoHash,
      peerId,
      port: 6881,
      uploaded: 1,
      downloaded: 2,
      left: 3,
      event: 'completed',
    });
    expect(seen).toBe(
      `/announce?token=abc&info_hash=${[...infoHash].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')}` +
        `&peer_id=${[...peerId].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')}` +
        '&port=6881&uploaded=1&downloaded=2&left=3&compact=1&numwant=50&event=completed',
    );
  });

  it('gets IPv6 peers from the real tracker as [addr]:port', async () => {
    const url = await startTracker(0, '::1');
    const hash = randomBytes(20);
    await announce(url, { ...params(hash, 7001), event: 'started' });
    expect((await announce(url, params(hash, 7002))).peers).toEqual(['[::1]:7001']);
  });

  it('decodes compact peers6 and non-compact dict lists, and keeps interval at least 1', async () => {
    const v6 = Buffer.concat([
      Buffer.from('20010db8000000000000000000000001', 'hex'),
      Buffer.from([0x1a, 0xe1]),
      Buffer.from('fe800000000000000202b3fffe1e8329', 'hex'),
      Buffer.from([0, 80]),
      Buffer.from('00000000000000000000000000000000', 'hex'),
      Buffer.from([0, 0]), // port 0: unusable, dropped
    ]);
    const answer = bencode.encode({
      interval: 0,
      complete: 2,
      peers: [
        { ip: Buffer.from('10.0.0.1'), port: 1, 'peer id': randomBytes(20) },
        { ip: Buffer.from('2001:db8::2'), port: 2 },
        { ip: Buffer.from('10.0.0.9') },
      ],
      peers6: v6,
    });
    const port = await listen((_req, res) => res.end(Buffer.from(answer)));
    const result = await announce(`http://127.0.0.1:${port}/announce`, params(randomBytes(20), 1));
    expect(result).toEqual({
      interval: 1,
      complete: 2,
      peers: ['10.0.0.1:1', '[2001:db8::2]:2', '[2001:db8::1]:6881', '[fe80::202:b3ff:fe1e:8329]:80'],
    });
  });

  it('refuses a wrong token with a TrackerError that does not repeat the token', async () => {
    const url = (await startTracker()).replace(TOKEN, 'not-the-token');
    const err = await announce(url, params(randomBytes(20), 7001)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrackerError);
    expect((err as Error).message).toContain('swarm token missing or wrong');
    expect((err as Error).message).not.toContain('not-the-token');
  });

  it('turns HTTP errors, garbage, timeouts and unreachable trackers into TrackerErrors', async () => {
    const status = await listen((_req, res) => res.writeHead(503).end('busy'));
    const garbage = await listen((_req, res) => res.end('<html>'));
    const list = await listen((_req, res) => res.end('le'));
    const hang = await listen(() => undefined);
    const huge = await listen((_req, res) => res.end(Buffer.alloc(2 << 20, 0x64)));
    const dead = await freePort();
    const p = params(randomBytes(20), 1);
    const cases: [number, RegExp][] = [
      [status, /HTTP 503/],
      [garbage, /undecodable/],
      [list, /not a dictionary/],
      [hang, /within 200 ms/],
      [huge, /exceeds/],
      [dead, /unreachable: .*ECONNREFUSED/],
    ];
    for (const [port, message] of cases) {
      const err = await announce(`http://127.0.0.1:${port}/announce?token=${TOKEN}`, p, { timeoutMs: 200 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TrackerError);
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).not.toContain(TOKEN);
    }
  });

  it('rejects with the abort reason when the caller aborts', async () => {
    const hang = await listen(() => undefined);
    const ac = new AbortController();
    const pending = announce(`http://127.0.0.1:${hang}/announce`, params(randomBytes(20), 1), { signal: ac.signal });
    ac.abort(new Error('shutting down'));
    await expect(pending).rejects.toThrow('shutting down');
  });
});

describe(TrackerAnnouncer.name, () => {
  it('lets two announcers of the same info hash see each other', async () => {
    const url = await startTracker();
    const hash = randomBytes(20);
    const one = announcer({ urls: [url], params: peer(hash, 7001) });
    one.a.start();
    await until(() => one.a.answered() === 1);
    const two = announcer({ urls: [url], params: peer(hash, 7002) });
    two.a.start();
    await until(() => two.seen.has('127.0.0.1:7001'));
    one.a.announceNow();
    await until(() => one.seen.has('127.0.0.1:7002'));
  });

  it('retries a dead tracker with growing delays until it answers, logging the URL redacted', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/announce?token=${TOKEN}`;
    const failures: number[] = [];
    const { a } = announcer({
      urls: [url],
      params: peer(randomBytes(20), 7001),
      retryFirstMs: 50,
      maxRetryMs: 400,
      onError: (u, err) => {
        expect(u).toBe(`http://127.0.0.1:${port}/announce?token=***`);
        expect(err).toBeInstanceOf(TrackerError);
        expect(err.message).not.toContain(TOKEN);
        failures.push(performance.now());
      },
    });
    a.start();
    await until(() => failures.length >= 4);
    // Timers never fire early but may fire late on a busy machine: check each gap against its doubled floor.
    const gaps = failures.slice(1, 4).map((t, i) => t - failures[i]);
    expect(gaps[0]).toBeGreaterThanOrEqual(45);
    expect(gaps[1]).toBeGreaterThanOrEqual(95);
    expect(gaps[2]).toBeGreaterThanOrEqual(195);
    expect(a.answered()).toBe(0);
    await startTracker(port);
    await until(() => a.answered() === 1, 3000);
  });

  it('sends stopped so the tracker forgets the peer', async () => {
    const url = await startTracker();
    const hash = randomBytes(20);
    const one = announcer({ urls: [url], params: peer(hash, 7001) });
    const two = announcer({ urls: [url], params: peer(hash, 7002) });
    one.a.start();
    two.a.start();
    await until(() => one.a.answered() === 1 && two.a.answered() === 1);
    await one.a.stop();
    const three = announcer({ urls: [url], params: peer(hash, 7003) });
    three.a.start();
    await until(() => three.a.answered() === 1);
    expect([...three.seen]).toEqual(['127.0.0.1:7002']);
  });

  it('sends started, completed once, then stopped, to each tracker independently', async () => {
    const events: string[][] = [[], []];
    const ports = await Promise.all(
      events.map((list) =>
        listen((req, res) => {
          list.push(new URL(req.url!, 'http://x').searchParams.get('event') ?? 'none');
          res.end(Buffer.from(bencode.encode({ interval: 3600, peers: Buffer.from([10, 0, 0, 1, 0, 9]) })));
        }),
      ),
    );
    const dead = await freePort();
    const errors: string[] = [];
    const peerLists: string[][] = [];
    const { a } = announcer({
      urls: [...ports, dead].map((p) => `http://127.0.0.1:${p}/announce`),
      params: peer(randomBytes(20), 7001, 0),
      onPeers: (peers) => peerLists.push(peers),
      onError: (u) => errors.push(u),
      retryFirstMs: 60_000,
    });
    a.start();
    a.completed();
    a.completed();
    // Answers handled by the announcer, not just requests seen by the servers: announceNow skips trackers in flight.
    await until(
      () => peerLists.length === 4 && errors.length === 1,
      4000,
      () => ({ events, errors }),
    );
    expect(a.answered()).toBe(2);
    expect(peerLists).toEqual(Array(4).fill(['10.0.0.1:9']));
    a.announceNow();
    await until(
      () => events.every((e) => e.length === 3) && errors.length === 2,
      4000,
      () => ({ events, errors }),
    );
    await a.stop();
    await a.stop();
    expect(events).toEqual([
      ['started', 'completed', 'none', 'stopped'],
      ['started', 'completed', 'none', 'stopped'],
    ]);
    expect(errors).toEqual([`http://127.0.0.1:${dead}/announce`, `http://127.0.0.1:${dead}/announce`]);
  });

  it('bounds stop() by 2 s when a tracker hangs', async () => {
    let calls = 0;
    const port = await listen((_req, res) => {
      if (calls++ === 0) res.end(Buffer.from(bencode.encode({ interval: 3600, peers: new Uint8Array(0) })));
    });
    const { a } = announcer({ urls: [`http://127.0.0.1:${port}/announce`], params: peer(randomBytes(20), 7001) });
    a.start();
    await until(() => a.answered() === 1);
    const t0 = Date.now();
    await a.stop();
    expect(Date.now() - t0).toBeLessThan(2500);
    expect(calls).toBe(2);
  });
});

describe(redactToken.name, () => {
  it('hides the token value wherever it sits in the query', () => {
    expect(redactToken('http://t:6969/announce?token=abc')).toBe('http://t:6969/announce?token=***');
    expect(redactToken('http://t:6969/announce?a=1&token=a%20b&c=2')).toBe('http://t:6969/announce?a=1&token=***&c=2');
    expect(redactToken('http://t:6969/announce?mytoken=x')).toBe('http://t:6969/announce?mytoken=x');
    expect(redactToken('http://t:6969/announce')).toBe('http://t:6969/announce');
  });
});
