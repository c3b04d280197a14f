import { describe, expect, it } from 'vitest';
import { ManualClock } from '../testing/manual-clock.js';
import { TokenBucket } from './token-bucket.js';

describe(TokenBucket.name, () => {
  it('is a no-op when unlimited', async () => {
    const bucket = new TokenBucket(0);
    await bucket.take(1e12);
    expect(bucket.tryTake(1e12)).toBe(true);
  });

  it('averages the configured rate over a transfer: exact token arithmetic on a manual clock', async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket(1_000_000, 0.05, 1, clock);
    const grantedAt: number[] = [];
    for (let i = 0; i < 10; i++) {
      let granted = false;
      void bucket.take(50_000).then(() => (granted = true));
      // 1 ms steps, bounded: a bucket that never grants fails here rather than hanging.
      await clock.advance(0);
      for (let step = 0; !granted && step < 1000; step++) await clock.advance(1);
      expect(granted).toBe(true);
      grantedAt.push(clock.now());
    }
    // 500 kB at 1 MB/s, the first 50 kB from the initial burst: 450 ms, each later take 50 ms apart.
    expect(grantedAt).toEqual([0, 50, 100, 150, 200, 250, 300, 350, 400, 450]);
    expect(clock.pending).toBe(0);
    // The same over real time (±10 %) is the drill's: test/drills/rate-bands.drill.ts.
  });

  it('a waiter wakes exactly when its debt is repaid, not a tick before', async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket(1000, 1, 1, clock);
    expect(bucket.tryTake(1000)).toBe(true);
    let granted = false;
    void bucket.take(250).then(() => (granted = true));
    await clock.advance(249);
    expect(granted).toBe(false);
    await clock.advance(1);
    expect(granted).toBe(true);
  });

  it('releases waiters when the rate is lifted', async () => {
    const bucket = new TokenBucket(10, 0.25, 1);
    const pending = bucket.take(1_000_000);
    setTimeout(() => bucket.setRate(0), 20);
    await expect(pending).resolves.toBeUndefined();
  });

  it('rejects waiters on abort', async () => {
    const bucket = new TokenBucket(10, 0.25, 1);
    const ac = new AbortController();
    const pending = bucket.take(1_000_000, ac.signal);
    ac.abort(new Error('gone'));
    await expect(pending).rejects.toThrow('gone');
  });

  it('leaves no timer behind when a waiter is aborted', async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket(10, 0.25, 1, clock);
    const ac = new AbortController();
    const pending = bucket.take(1_000_000, ac.signal);
    expect(clock.pending).toBe(1);
    ac.abort(new Error('gone'));
    await expect(pending).rejects.toThrow('gone');
    expect(clock.pending).toBe(0);
  });

  it('tryTake refuses once the burst is spent', () => {
    const bucket = new TokenBucket(10, 1, 1);
    let granted = 0;
    for (let i = 0; i < 100; i++) if (bucket.tryTake()) granted++;
    expect(granted).toBe(10);
  });

  it('a raised limit applies at once; a lowered one caps the saved-up burst', () => {
    const bucket = new TokenBucket(5, 1, 1);
    while (bucket.tryTake());
    bucket.setRate(1000);
    let granted = 0;
    for (let i = 0; i < 2000; i++) if (bucket.tryTake()) granted++;
    expect(granted).toBeGreaterThanOrEqual(995);
    expect(granted).toBeLessThan(1010);
    bucket.setRate(10);
    granted = 0;
    for (let i = 0; i < 100; i++) if (bucket.tryTake()) granted++;
    expect(granted).toBeLessThanOrEqual(10);
  });
});
