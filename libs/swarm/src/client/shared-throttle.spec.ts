import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import WebTorrent from 'webtorrent';
import { ThrottleService } from '#ops';
import { shareThrottle } from './shared-throttle.js';

/** The part of speed-limiter's Throttle (a streamx Transform) the spec drives. */
interface ThrottleStream {
  write(chunk: Buffer): boolean;
  on(event: 'data', listener: (chunk: Buffer) => void): void;
  destroy(): void;
}

describe(shareThrottle.name, () => {
  let client: WebTorrent | undefined;
  afterEach(async () => {
    await new Promise<void>((resolve) => client?.destroy(() => resolve()) ?? resolve());
    client = undefined;
  });

  /** webtorrent's own client and throttle group (its wires read through `group.throttle()`). */
  function webTorrentAt(rate: number, throttle: ThrottleService) {
    client = new WebTorrent({ dht: false, lsd: false, utp: false, natUpnp: false, natPmp: false, torrentPort: 0, downloadLimit: rate });
    shareThrottle(client.throttleGroups.down, throttle, 'downloadRate');
    return client.throttleGroups.down as unknown as { throttle(): ThrottleStream; getRate(): number };
  }

  async function pass(stream: ThrottleStream, bytes: number): Promise<void> {
    let seen = 0;
    const done = new Promise<void>((resolve) =>
      stream.on('data', (chunk) => {
        seen += chunk.length;
        if (seen >= bytes) resolve();
      }),
    );
    stream.write(Buffer.alloc(bytes));
    await done;
  }

  it('BitTorrent bytes draw from the same bucket as the node’s HTTP bytes', async () => {
    // 1 MB/s: our bucket holds a quarter second (250 kB) when full.
    const throttle = new ThrottleService({ downloadRate: { unit: 'bytes/s', initial: 1_000_000 } });
    const stream = webTorrentAt(1_000_000, throttle).throttle();
    await pass(stream, 200_000);
    // Had webtorrent used its own bucket, ours would still hold 250 kB.
    expect(throttle.takeNow('downloadRate', 100_000)).toBe(false);
    stream.destroy();
  });

  it('HTTP bytes taken first make the BitTorrent bytes wait for the shared bucket', async () => {
    const throttle = new ThrottleService({ downloadRate: { unit: 'bytes/s', initial: 1_000_000 } });
    const stream = webTorrentAt(1_000_000, throttle).throttle();
    // An origin or relay read leaves the bucket 100 kB in debt (0.1 s at this rate).
    await throttle.take('downloadRate', 350_000);
    let out = 0;
    stream.on('data', (chunk) => (out += chunk.length));
    stream.write(Buffer.alloc(50_000));
    await new Promise((r) => setImmediate(r));
    expect(out).toBe(0);
    // Released once the debt is paid (waits on the bucket's timer, not on a fixed sleep).
    await throttle.take('downloadRate', 1);
    await expect.poll(() => out).toBe(50_000);
    stream.destroy();
  });

  it('follows live rate changes (speed-limiter reads the group rate back)', () => {
    const throttle = new ThrottleService({ downloadRate: { unit: 'bytes/s', initial: 1_000_000 } });
    const group = webTorrentAt(1_000_000, throttle);
    client?.throttleDownload(5_000_000);
    expect(group.getRate()).toBe(5_000_000);
  });
});
