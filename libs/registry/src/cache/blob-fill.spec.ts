import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ManualClock, until } from '../../../ops/src/testing/manual-clock.js';
import { ScriptedBlobFetcher } from '../testing/scripted-blob-fetcher.js';
import { DigestMismatchError } from '../oci/oci.errors.js';
import type { BlobFetcher, BlobRequest, FetchedBlob, FillObserver, FillTarget, StoredUntil } from '../sources/blob-source.js';
import { ClientCredentials } from '../origin/client-credentials.js';
import { BlobCache } from './blob-cache.js';
import { BlobFill } from './blob-fill.js';

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const requestFor = (digest: string, size?: number): BlobRequest => ({
  origin: { base: 'http://127.0.0.1:1', host: '127.0.0.1:1' },
  repository: 'a/b',
  digest,
  credentials: ClientCredentials.anonymous,
  size,
});

/** Serves `data` from any offset in 64 KiB chunks, optionally failing after `failAfter` bytes of its own stream. */
function chunked(name: string, data: Buffer, failAfter?: number): BlobFetcher & { calls: number[] } {
  const calls: number[] = [];
  return {
    name,
    calls,
    async fetch(_req: BlobRequest, offset: number): Promise<FetchedBlob> {
      calls.push(offset);
      async function* gen(): AsyncGenerator<Buffer> {
        for (let pos = offset; pos < data.length; pos += 64 * 1024) {
          if (failAfter !== undefined && pos - offset >= failAfter) throw new Error('peer went away');
          yield Buffer.from(data.subarray(pos, Math.min(data.length, pos + 64 * 1024)));
          await new Promise<void>((r) => setImmediate(r));
        }
      }
      return { size: data.length, stream: Readable.from(gen()) };
    },
  };
}

/** Writes `onDisk` into the fill's file itself and yields StoredUntil marks, with `chunks` of `inMemory` when given. */
function inPlace(data: { onDisk: Buffer; inMemory?: Buffer; dieAfter?: number; step?: number }): BlobFetcher {
  return {
    name: 'peer',
    async fetch(_req: BlobRequest, offset: number, _signal: AbortSignal, target?: FillTarget): Promise<FetchedBlob | undefined> {
      if (!target) return undefined;
      const fd = await open(target.path, 'r+');
      const step = data.step ?? 200 * 1024;
      async function* marks(): AsyncGenerator<StoredUntil> {
        try {
          for (let pos = offset; pos < data.onDisk.length; pos += step) {
            if (data.dieAfter !== undefined && pos >= data.dieAfter) throw new Error('swarm went away');
            const end = Math.min(data.onDisk.length, pos + step);
            await fd.write(data.onDisk, pos, end - pos, pos);
            const mem = data.inMemory?.subarray(pos, end);
            // Two pieces per mark, as a swarm hands over several verified piece buffers at once.
            const half = (end - pos) >> 1;
            yield mem ? { storedUntil: end, chunks: [mem.subarray(0, half), mem.subarray(half)] } : { storedUntil: end };
          }
        } finally {
          await fd.close();
        }
      }
      return { size: data.onDisk.length, stream: Readable.from(marks(), { objectMode: true }), stop: async () => undefined };
    },
  };
}

describe(BlobFill.name, () => {
  let dir: string;
  let cache: BlobCache;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'blob-fill-spec-'));
    cache = new BlobCache({ dir, maxBytes: 0, highWatermark: 0.9, lowWatermark: 0.8 });
    await cache.init();
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('keeps memory flat: 256 MiB in 64 KiB chunks grows heap+external by far less than the blob', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const block = randomBytes(64 * 1024);
    const count = 4096;
    const hash = createHash('sha256');
    for (let i = 0; i < count; i++) hash.update(block);
    const digest = `sha256:${hash.digest('hex')}`;
    const size = block.length * count;
    const used = () => {
      const m = process.memoryUsage();
      return m.heapUsed + m.external;
    };
    gc();
    const base = used();
    let peak = 0;
    const fetcher: BlobFetcher = {
      name: 'origin',
      async fetch(): Promise<FetchedBlob> {
        async function* gen(): AsyncGenerator<Buffer> {
          for (let i = 0; i < count; i++) {
            if (i % 256 === 255) {
              gc();
              peak = Math.max(peak, used() - base);
            }
            yield Buffer.from(block);
          }
        }
        return { size, stream: Readable.from(gen()) };
      },
    };
    const fill = new BlobFill(cache, requestFor(digest), [fetcher], { stallTimeoutMs: 10_000 });
    await fill.done;
    fill.release();
    expect(cache.has(digest)).toBe(true);
    expect(peak).toBeLessThan(64 * 1024 * 1024);
  }, 120_000);

  it('hashes the chunks a StoredUntil carries instead of reading the file back', async () => {
    const data = randomBytes(1024 * 1024 + 77);
    const onDisk = Buffer.from(data);
    onDisk[300 * 1024] ^= 1;
    const fill = new BlobFill(cache, requestFor(digestOf(data)), [inPlace({ onDisk, inMemory: data })], { stallTimeoutMs: 2000 });
    await fill.done;
    fill.release();
    expect(cache.has(digestOf(data))).toBe(true);
  });

  it('reads the file back when a StoredUntil carries no chunks, or chunks of the wrong length', async () => {
    const data = randomBytes(1024 * 1024 + 77);
    const onDisk = Buffer.from(data);
    onDisk[300 * 1024] ^= 1;
    const without = new BlobFill(cache, requestFor(digestOf(data)), [inPlace({ onDisk })], { stallTimeoutMs: 2000 });
    await expect(without.done).rejects.toBeInstanceOf(DigestMismatchError);
    without.release();
    expect(cache.has(digestOf(data))).toBe(false);
    expect(await readdir(cache.tmpDir)).toEqual([]);

    // Chunks that do not cover the marked range are ignored: the file (right, this time) is hashed.
    const short = data.subarray(0, data.length - 1);
    const wrongLength = new BlobFill(cache, requestFor(digestOf(data)), [inPlace({ onDisk: data, inMemory: short })], {
      stallTimeoutMs: 2000,
    });
    await wrongLength.done;
    wrongLength.release();
    expect(cache.has(digestOf(data))).toBe(true);
  });

  it('shows the observer every byte once, in order, across fetcher switches, then reports the commit', async () => {
    const data = randomBytes(2 * 1024 * 1024 + 5);
    const seen: Buffer[] = [];
    const events: string[] = [];
    const observed: { size: number; digest: string }[] = [];
    const observer: FillObserver = {
      data: (chunk) => seen.push(Buffer.from(chunk)),
      committed: () => events.push('committed'),
      failed: (err) => events.push(`failed: ${err.message}`),
    };
    const swarm = inPlace({ onDisk: data, inMemory: data, dieAfter: 600 * 1024 });
    const peer = chunked('relay', data, 300 * 1024);
    const origin = chunked('origin', data);
    const fill = new BlobFill(cache, requestFor(digestOf(data)), [swarm, peer, origin], {
      stallTimeoutMs: 2000,
      observe: (req, size) => {
        observed.push({ size, digest: req.digest });
        return observer;
      },
    });
    await fill.sized;
    const reader = fill.read(undefined);
    const parts: Buffer[] = [];
    for await (const c of reader) parts.push(c as Buffer);
    await fill.done;
    fill.release();
    expect(Buffer.concat(parts).equals(data)).toBe(true);
    expect(observed).toEqual([{ size: data.length, digest: digestOf(data) }]);
    expect(Buffer.concat(seen).equals(data)).toBe(true);
    expect(events).toEqual(['committed']);
    expect(peer.calls).toEqual([600 * 1024]);
    // The relay fails at its first 64 KiB chunk boundary past 300 KiB.
    expect(origin.calls).toEqual([920 * 1024]);
    expect(cache.has(digestOf(data))).toBe(true);
  });

  it('tells the observer when the fill fails', async () => {
    const data = randomBytes(300 * 1024);
    const events: string[] = [];
    const wrong = Buffer.from(data);
    wrong[wrong.length - 1] ^= 1;
    const fill = new BlobFill(cache, requestFor(digestOf(data), data.length), [chunked('origin', wrong)], {
      stallTimeoutMs: 2000,
      observe: () => ({ data: () => undefined, committed: () => events.push('committed'), failed: (err) => events.push(err.name) }),
    });
    await expect(fill.done).rejects.toBeInstanceOf(DigestMismatchError);
    fill.release();
    expect(events).toEqual([new DigestMismatchError('a', 'b').name]);
  });

  it('lets readers tail a slow fill: bytes reach them while the write buffer is far from full', async () => {
    const data = randomBytes(256 * 1024);
    let sawFirst!: () => void;
    const firstSeen = new Promise<void>((r) => (sawFirst = r));
    const fetcher: BlobFetcher = {
      name: 'origin',
      async fetch(): Promise<FetchedBlob> {
        const stream = new Readable({ read() {} });
        stream.push(data.subarray(0, 1000));
        // The rest only once the reader has had the first bytes: a fill holding them back would hang.
        firstSeen
          .then(
            () => stream.push(data.subarray(1000)),
            () => undefined,
          )
          .then(
            () => stream.push(null),
            () => undefined,
          );
        return { size: data.length, stream };
      },
    };
    const fill = new BlobFill(cache, requestFor(digestOf(data)), [fetcher], { stallTimeoutMs: 2000 });
    const reader = fill.read({ start: 0, end: data.length - 1 });
    const parts: Buffer[] = [];
    await fill.sized;
    for await (const c of reader) {
      parts.push(c as Buffer);
      sawFirst();
    }
    await fill.done;
    fill.release();
    expect(Buffer.concat(parts).equals(data)).toBe(true);
  });
  it('abandons a stalled fetcher after stallTimeout on its clock, not a tick before; the next continues at the byte reached', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    try {
      const clock = new ManualClock();
      const data = randomBytes(1024 * 1024 + 333);
      const hangAt = 300 * 1024 + 17;
      const relay = new ScriptedBlobFetcher('relay', data, 100 * 1024).script({ hangAt });
      const origin = new ScriptedBlobFetcher('origin', data);
      const failed: string[] = [];
      let fromRelay = 0;
      const fill = new BlobFill(cache, requestFor(digestOf(data), data.length), [relay, origin], {
        stallTimeoutMs: 10_000,
        clock,
        onFetcherFailed: (name) => failed.push(name),
        onBytes: (source, n) => (fromRelay += source === 'relay' ? n : 0),
      });
      await until(() => fromRelay === hangAt, 'the relay to stop sending');
      await clock.advance(9_999);
      expect(origin.offsets).toEqual([]);
      await clock.advance(1);
      await fill.done;
      fill.release();
      expect(failed).toEqual(['relay']);
      expect(origin.offsets).toEqual([hangAt]);
      expect(relay.open()).toEqual([]);
      expect(cache.has(digestOf(data))).toBe(true);
      // The stall, flush and stop timers all ran on the clock, and none is left.
      expect(clock.pendingDelays()).toEqual([]);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
