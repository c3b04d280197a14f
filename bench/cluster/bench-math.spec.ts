import { describe, expect, it } from 'vitest';
import { cdfPoints, lowerBounds, parseBytes, quantile } from './bench-math.js';

describe('bench-math', () => {
  it('parses sizes and rates in decimal and binary units', () => {
    expect(parseBytes('256MB')).toBe(256_000_000);
    expect(parseBytes('10MB/s')).toBe(10_000_000);
    expect(parseBytes('20MiB')).toBe(20 * 2 ** 20);
    expect(parseBytes('1.5GB')).toBe(1_500_000_000);
    expect(parseBytes('4096')).toBe(4096);
    expect(() => parseBytes('10 parsecs')).toThrow(/not a size/);
    expect(() => parseBytes('0MB')).toThrow(/positive/);
  });

  it('takes nearest-rank quantiles: p50 of 20 is the 10th, p100 the max', () => {
    const v = Array.from({ length: 20 }, (_, i) => 20 - i);
    expect(quantile(v, 0.5)).toBe(10);
    expect(quantile(v, 1)).toBe(20);
    expect(quantile([3], 0.5)).toBe(3);
    expect(() => quantile([], 0.5)).toThrow();
  });

  it('computes the Kumar–Ross bound and the cold and direct variants', () => {
    const b = lowerBounds({
      layerBytes: 256e6,
      agents: 20,
      seedUpload: 10e6,
      agentUpload: 10e6,
      agentDownload: 10e6,
      originToSeed: 10e6,
      originUpload: 10e6,
    });
    // max(F/u_s, F/d, N·F/(u_s+Σu_i)) = max(25.6, 25.6, 20·256/210 = 24.38)
    expect(b.warm).toBeCloseTo(25.6, 6);
    expect(b.coldStoreAndForward).toBeCloseTo(51.2, 6);
    expect(b.coldPipelined).toBeCloseTo(25.6, 6);
    expect(b.direct).toBeCloseTo(512, 6);
    // With slow agent uplinks the swarm term binds.
    const slow = lowerBounds({
      layerBytes: 100,
      agents: 10,
      seedUpload: 10,
      agentUpload: 1,
      agentDownload: 100,
      originToSeed: 100,
      originUpload: 100,
    });
    expect(slow.warm).toBeCloseTo((10 * 100) / 20, 6);
  });

  it('builds an empirical CDF in time order', () => {
    expect(cdfPoints([3, 1, 2, 4])).toEqual([
      { t: 1, fraction: 0.25 },
      { t: 2, fraction: 0.5 },
      { t: 3, fraction: 0.75 },
      { t: 4, fraction: 1 },
    ]);
  });
});
