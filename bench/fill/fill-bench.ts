/**
 * CPU cost of a cache fill alone: an in-process fetcher yields a blob in 64 KiB chunks (as undici
 * delivers an origin body; BENCH_CHUNK_KB to change) into a BlobFill in a temp dir; prints CPU ms
 * per MB and peak RSS.
 *
 *   npm run build && node dist/bench/fill/fill-bench.js            # 512 MiB, 3 rounds
 *   BENCH_FILL_MB=256 BENCH_ROUNDS=5 BENCH_CHUNK_KB=16 node dist/bench/fill/fill-bench.js
 *
 * Reads nothing over the network; the fetcher copies each chunk from one random block.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Logger } from '@nestjs/common';
import { BlobCache } from '../../libs/registry/src/cache/blob-cache.js';
import { BlobFill } from '../../libs/registry/src/cache/blob-fill.js';
import type { BlobFetcher, FetchedBlob } from '../../libs/registry/src/sources/blob-source.js';
import { ClientCredentials } from '../../libs/registry/src/origin/client-credentials.js';

const MB = 1e6;
const CHUNK = Number(process.env.BENCH_CHUNK_KB ?? 64) * 1024;
const blobMiB = Number(process.env.BENCH_FILL_MB ?? 512);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);

async function main(): Promise<void> {
  Logger.overrideLogger(['error']);
  const block = randomBytes(CHUNK);
  const count = (blobMiB * 1024 * 1024) / CHUNK;
  const hash = createHash('sha256');
  for (let i = 0; i < count; i++) hash.update(block);
  const digest = `sha256:${hash.digest('hex')}`;
  const size = count * CHUNK;
  const fetcher: BlobFetcher = {
    name: 'origin',
    fetch(): Promise<FetchedBlob> {
      // A byte stream fed from outside, one chunk per macrotask, like a socket: not an object-mode generator.
      let i = 0;
      const stream = new Readable({
        highWaterMark: CHUNK,
        read() {
          setImmediate(() => {
            if (i === count) return void this.push(null);
            i++;
            this.push(Buffer.from(block));
          });
        },
      });
      return Promise.resolve({ size, stream });
    },
  };
  for (let round = 0; round < rounds; round++) {
    const dir = await mkdtemp(join(tmpdir(), 'fill-bench-'));
    try {
      const cache = new BlobCache({ dir, maxBytes: 0, highWatermark: 0.9, lowWatermark: 0.8 });
      await cache.init();
      let peakRss = 0;
      const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
      const cpu = process.cpuUsage();
      const started = performance.now();
      const fill = new BlobFill(
        cache,
        {
          origin: { base: 'http://127.0.0.1:1', host: '127.0.0.1:1' },
          repository: 'a/b',
          digest,
          credentials: ClientCredentials.anonymous,
        },
        [fetcher],
        { stallTimeoutMs: 10_000 },
      );
      await fill.done;
      fill.release();
      const used = process.cpuUsage(cpu);
      const seconds = (performance.now() - started) / 1000;
      clearInterval(sampler);
      const ms = (used.user + used.system) / 1000;
      console.log(
        `round ${round + 1}: ${blobMiB} MiB in ${seconds.toFixed(2)} s (${(size / MB / seconds).toFixed(0)} MB/s), ` +
          `CPU ${(ms / (size / MB)).toFixed(2)} ms/MB (user ${(used.user / 1000 / (size / MB)).toFixed(2)}, sys ${(used.system / 1000 / (size / MB)).toFixed(2)}), peak RSS ${(peakRss / MB).toFixed(0)} MB`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

void main();
