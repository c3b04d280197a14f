import { describe, expect, it } from 'vitest';
import { TokenBucket } from './token-bucket.js';

describe(TokenBucket.name, () => {
  it('is a no-op when unlimited', async () => {
    const bucket = new TokenBucket(0);
    await bucket.take(1e12);
    expect(bucket.tryTake(1e12)).toBe(true);
  });

  it('averages the configured rate over a transfer', async () => {
    const bucket = new TokenBucket(1_000_000, 0.05, 1);
    const start = performance.now();
    for (let i = 0; i < 10; i++) await bucket.take(50_000);
    const elapsed = (performance.now() - start) / 1000;
    // 500 kB at 1 MB/s, minus the initial 50 kB burst: ~0.45 s. Loose bounds: this asserts the
    // bucket throttles at all and does not stall, not a timing target.
    expect(elapsed).toBeGreaterThan(0.3);
    expect(elapsed).toBeLessThan(2);
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
