import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BlobCache, FillingBlobSource } from '#registry';
import { ManualClock, until } from '../../../ops/src/testing/manual-clock.js';
import { ScriptedBlobFetcher } from '../../../registry/src/testing/scripted-blob-fetcher.js';
import { ProxyAnswerError } from '../swarm.errors.js';
import { blobFixture, type BlobFixture } from '../testing/blob-fixture.js';
import { FakeBlobSeeder } from '../testing/fake-blob-seeder.js';
import { FakeProxyApi, type TorrentScript } from '../testing/fake-proxy-api.js';
import { FakeProxyRing } from '../testing/fake-proxy-ring.js';
import { FakeSwarmClient } from '../testing/fake-swarm-client.js';
import { SwarmBlobFetcher, type SwarmBlobFetcherOptions } from './swarm-blob.fetcher.js';

/*
 * The fetcher/fill hand-over with every dependency in memory (ring, proxy API, swarm, seeder, the
 * origin) and time on a manual clock: each case runs in milliseconds, and ends with nothing left
 * running — no request, body, download or timer (the clock's and the global ones: any timer the
 * code under test would set on the real clock is faked here and counted).
 */

const PROXY = 'http://proxy-a.test:5005';
/** 3.5 pieces of 1 MiB: a last piece shorter than the others. */
const SIZE = 3.5 * 1024 * 1024;
const STALL_MS = 10_000;

let dir: string;
let cache: BlobCache;

beforeEach(async () => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
  dir = await mkdtemp(join(tmpdir(), 'swarm-hand-over-'));
  cache = new BlobCache({ dir, maxBytes: 0, highWatermark: 0.9, lowWatermark: 0.8 });
  await cache.init();
});

afterEach(async () => {
  vi.useRealTimers();
  await rm(dir, { recursive: true, force: true });
});

/** The agent's fetcher chain over fakes: swarm, the proxy's relay as fallback, the origin. */
function world(options: Partial<SwarmBlobFetcherOptions> = {}) {
  const clock = new ManualClock();
  const blob = blobFixture(SIZE);
  const ring = new FakeProxyRing([PROXY]);
  const api = new FakeProxyApi(clock);
  const swarm = new FakeSwarmClient(clock).add(blob.hex, blob.data);
  const seeder = new FakeBlobSeeder();
  const fetcher = new SwarmBlobFetcher({
    ring,
    swarm,
    seeder,
    api,
    clock,
    downloadDir: join(dir, 'swarm'),
    swarmToken: undefined,
    minSize: 1,
    torrentTimeoutMs: 60_000,
    relayAfterMs: 300,
    rescueAfterMs: 20_000,
    ...options,
  });
  const origin = new ScriptedBlobFetcher('origin', blob.data);
  const failed: string[] = [];
  const bytes: Record<string, number> = {};
  const source = new FillingBlobSource(cache, [fetcher, fetcher.relayFallback(), origin], {
    stallTimeoutMs: STALL_MS,
    clock,
    onFetcherFailed: (name) => failed.push(name),
    onBytes: (name, n) => (bytes[name] = (bytes[name] ?? 0) + n),
  });
  return { clock, blob, ring, api, swarm, seeder, fetcher, origin, source, failed, bytes };
}

/** A client's pull: every byte it received, and whether its stream ended or failed. */
async function pull(source: FillingBlobSource, blob: BlobFixture) {
  const opened = await source.open(blob.request);
  if (!opened) throw new Error('no blob');
  const stream: Readable = opened.read();
  const parts: Buffer[] = [];
  const state = { ended: false, error: undefined as Error | undefined };
  stream.on('data', (c: Buffer) => parts.push(c));
  stream.on('end', () => (state.ended = true));
  stream.on('error', (err) => (state.error = err));
  return {
    state,
    body: () => Buffer.concat(parts),
    finished: () => state.ended || state.error !== undefined,
    release: () => opened.release(),
  };
}

/** Nothing left running: requests, relay bodies, downloads, origin streams, timers. */
function expectNothingLeft(w: ReturnType<typeof world>) {
  expect(w.api.open(), 'proxy requests or relay bodies left open').toEqual([]);
  expect(w.swarm.open(), 'swarm downloads left running').toEqual([]);
  expect(w.origin.open(), 'origin streams left open').toEqual([]);
  expect(w.clock.pendingDelays(), 'timers left on the clock').toEqual([]);
  expect(vi.getTimerCount(), 'timers left on the global clock').toBe(0);
}

describe(`${SwarmBlobFetcher.name} hand-over (in-memory fakes, manual clock)`, () => {
  it('a cold relay that breaks off mid-piece: the origin continues at the byte reached, exact bytes, verified; the torrent request is dropped', async () => {
    const w = world();
    const cutAt = w.blob.pieceLength + 200 * 1024 + 7;
    w.api.whenTorrent({ answer: 'never' }).whenRelay({ answer: 'bytes', data: w.blob.data, cutAt, cut: 'error' });
    const client = await pull(w.source, w.blob);
    await until(() => w.api.of('torrent').length === 1, 'the torrent request');
    // The torrent does not come within relayAfterMs: the agent relays the proxy's fetch.
    await w.clock.advance(300);
    await until(client.finished, 'the pull');
    client.release();

    expect(client.state.error).toBeUndefined();
    expect(client.body().equals(w.blob.data)).toBe(true);
    expect(cache.has(w.blob.digest)).toBe(true);
    // The relay broke off mid-piece; the origin went on from exactly the bytes the fill had taken.
    const relayed = w.bytes.swarm ?? 0;
    expect(relayed).toBeGreaterThan(w.blob.pieceLength);
    expect(relayed).toBeLessThanOrEqual(cutAt);
    expect(w.origin.offsets).toEqual([relayed]);
    expect(w.bytes.origin).toBe(SIZE - relayed);
    // The relay fallback did not ask the proxy again for this blob, and the proxy stays in the ring.
    expect(w.api.of('relay')).toHaveLength(1);
    expect(w.failed).toEqual(['swarm']);
    expect(w.ring.markedDown).toEqual([]);
    expect(w.api.of('torrent')[0].signal.aborted).toBe(true);
    expectNothingLeft(w);
  });

  it("a late piece's rescue relay that ends mid-piece: the fetcher stops, the relay fallback continues from the piece, bytes exact", async () => {
    const w = world();
    w.api.whenTorrent({ answer: 'torrent', metainfo: w.blob.metainfo }).whenRelay(
      // The rescue of piece 1: the proxy's body ends cleanly half-way through the piece.
      { answer: 'bytes', data: w.blob.data, cutAt: w.blob.pieceLength + w.blob.pieceLength / 2, cut: 'end' },
      // The fallback's relay from the byte the fill reached.
      { answer: 'bytes', data: w.blob.data },
    );
    const client = await pull(w.source, w.blob);
    await until(() => w.swarm.downloads.length === 1, 'the swarm download');
    const download = w.swarm.downloads[0];
    // In place: the torrent writes into the fill's own file.
    expect(download.path.startsWith(cache.tmpDir)).toBe(true);
    download.peers = 0;
    download.deliver(0);
    // No peer connected: the reader's next piece is fetched from the relay after 2 s.
    await w.clock.advance(2000);
    await until(() => w.api.of('relay').length === 1, 'the rescue relay');
    expect(w.api.of('relay')[0]).toMatchObject({ offset: w.blob.pieceLength, end: 2 * w.blob.pieceLength });
    await until(() => w.api.of('relay')[0].body?.closed === true, 'the rescue relay to end');
    // The next frontier check (every second) sees the failed rescue and ends the fetcher.
    await w.clock.advance(1000);
    await until(client.finished, 'the pull');
    client.release();

    expect(client.state.error).toBeUndefined();
    expect(client.body().equals(w.blob.data)).toBe(true);
    expect(cache.has(w.blob.digest)).toBe(true);
    expect(download.adopted).toEqual([]);
    expect(w.failed).toEqual(['swarm']);
    expect(w.api.of('relay')[1].offset).toBe(w.blob.pieceLength);
    expect(w.bytes).toEqual({ swarm: w.blob.pieceLength, relay: SIZE - w.blob.pieceLength });
    expect(w.origin.offsets).toEqual([]);
    expect(download.destroyed).toBe(true);
    expect(download.openReaders).toBe(0);
    expectNothingLeft(w);
  });

  it('a torrent that never arrives: relay after relayAfterMs, a relay ending early stalls the fill, the torrent request is aborted, the origin finishes', async () => {
    const w = world();
    const endAt = 2 * w.blob.pieceLength + 12_345;
    w.api
      .whenTorrent({ answer: 'never' })
      .whenRelay(
        { answer: 'bytes', data: w.blob.data, cutAt: endAt, cut: 'end' },
        { answer: 'status', status: 503, reason: ': UNAVAILABLE busy' },
      );
    const client = await pull(w.source, w.blob);
    await until(() => w.api.of('torrent').length === 1, 'the torrent request');
    await w.clock.advance(300);
    await until(() => (w.bytes.swarm ?? 0) === endAt, 'the relayed bytes');
    // The relay ended early and the torrent does not come: no bytes for stallTimeout.
    expect(w.api.of('torrent')[0].settled).toBe(false);
    await w.clock.advance(STALL_MS);
    await until(client.finished, 'the pull');
    client.release();

    expect(client.body().equals(w.blob.data)).toBe(true);
    expect(cache.has(w.blob.digest)).toBe(true);
    expect(w.failed).toEqual(['swarm']);
    // The fallback asked the proxy to relay from where the fill was (503), then the origin served.
    expect(w.api.of('relay').map((c) => c.offset)).toEqual([0, endAt]);
    expect(w.origin.offsets).toEqual([endAt]);
    expect(w.ring.blobFailures).toEqual([`${PROXY} ${w.blob.digest}`]);
    expect(w.api.of('torrent')).toHaveLength(1);
    expect(w.api.of('torrent')[0].signal.aborted).toBe(true);
    expectNothingLeft(w);
  });

  it('a torrent that never arrives with the relay off: timed out on the clock, asked again twice, marked down; relay then origin', async () => {
    const w = world({ relayAfterMs: 0 });
    const cutAt = w.blob.pieceLength / 2;
    w.api.whenTorrent({ answer: 'never' }).whenRelay({ answer: 'bytes', data: w.blob.data, cutAt, cut: 'error' });
    const client = await pull(w.source, w.blob);
    for (let attempt = 1; attempt <= 3; attempt++) {
      await until(() => w.api.of('torrent').length === attempt, `torrent request ${attempt}`);
      await w.clock.advance(60_000);
      // The pause before asking again (1 s, then 2 s).
      if (attempt < 3) await w.clock.advance(attempt * 1000);
    }
    await until(client.finished, 'the pull');
    client.release();

    expect(client.body().equals(w.blob.data)).toBe(true);
    expect(cache.has(w.blob.digest)).toBe(true);
    expect(w.api.of('torrent').every((c) => c.settled && c.signal.aborted)).toBe(true);
    expect(w.ring.markedDown).toEqual([PROXY]);
    // The swarm gave the blob up without failing (no torrent: the next fetcher's turn); the relay broke off.
    expect(w.failed).toEqual(['relay']);
    expect(w.origin.offsets).toEqual([w.bytes.relay]);
    expectNothingLeft(w);
  });

  it('a fill that gives the swarm up while its download is starting (hand-over from the relay): the download is stopped, nothing is left', async () => {
    const w = world();
    w.api
      .whenTorrent({ answer: 'torrent', metainfo: w.blob.metainfo, delayMs: 1000 })
      .whenRelay({ answer: 'bytes', data: w.blob.data, everyMs: 100 }, { answer: 'bytes', data: w.blob.data });
    // The torrent's file takes long to open.
    w.swarm.hold();
    const client = await pull(w.source, w.blob);
    await until(() => w.api.of('torrent').length === 1, 'the torrent request');
    // The torrent comes at 1 s; the relay hands over at its next chunk, and the download starts.
    for (let i = 0; i < 12; i++) await w.clock.advance(100);
    await until(() => w.swarm.waiting === 1, 'the download to start');
    const relayed = w.bytes.swarm ?? 0;
    expect(relayed).toBeGreaterThan(0);
    // Nothing comes while the download starts: the fill abandons the swarm for the relay fallback.
    await w.clock.advance(STALL_MS);
    await until(client.finished, 'the pull');
    expect(client.body().equals(w.blob.data)).toBe(true);
    expect(w.api.of('relay').map((c) => c.offset)).toEqual([0, relayed]);
    // Now the download's file is open, after the fill moved on.
    w.swarm.release();
    await until(() => w.swarm.downloads.length === 1 && w.swarm.downloads[0].destroyed, 'the late download to be stopped');
    client.release();
    // Verified and cached: seeded with the torrent that arrived.
    await until(() => w.seeder.seeded.length === 1, 'seeding');
    expect(w.seeder.seeded).toEqual([w.blob.digest]);
    expect(w.failed).toEqual(['swarm']);
    expectNothingLeft(w);
  });

  const garbage: [string, (b: BlobFixture) => TorrentScript][] = [
    ['a body that is no torrent', () => ({ answer: 'torrent', metainfo: Buffer.from('<html>502 Bad Gateway</html>') })],
    ['a torrent of another blob (wrong info hash)', () => ({ answer: 'torrent', metainfo: blobFixture(SIZE).metainfo })],
    ['a 500', () => ({ answer: 'status', status: 500, reason: ': UNKNOWN disk' })],
    ['a torrent cut short', (b) => ({ answer: 'torrent', metainfo: b.metainfo.subarray(0, b.metainfo.length - 30) })],
    ['no peer port', () => ({ answer: 'throw', error: new ProxyAnswerError(PROXY, 'no valid x-p2p-peer-port header') })],
  ];
  for (const [what, script] of garbage) {
    it(`a proxy answering ${what}: a ProxyAnswerError, counted against the proxy for this blob, not asked again; the origin serves`, async () => {
      const w = world();
      w.api.whenTorrent(script(w.blob));
      await expect(w.fetcher.fetch(w.blob.request, 0, new AbortController().signal)).rejects.toBeInstanceOf(ProxyAnswerError);
      expect(w.ring.blobFailures).toEqual([`${PROXY} ${w.blob.digest}`]);
      w.fetcher.settled(w.blob.digest, false);
      w.ring.blobFailures.length = 0;

      const client = await pull(w.source, w.blob);
      await until(client.finished, 'the pull');
      client.release();
      expect(client.body().equals(w.blob.data)).toBe(true);
      expect(cache.has(w.blob.digest)).toBe(true);
      expect(w.failed).toEqual(['swarm']);
      expect(w.ring.blobFailures).toEqual([`${PROXY} ${w.blob.digest}`]);
      expect(w.ring.markedDown).toEqual([]);
      expect(w.ring.served).toEqual([]);
      // Once per fill: no retry, no relay from a proxy that answers garbage.
      expect(w.api.of('torrent')).toHaveLength(2);
      expect(w.api.of('relay')).toHaveLength(0);
      expect(w.origin.offsets).toEqual([0]);
      expectNothingLeft(w);
    });
  }
});
