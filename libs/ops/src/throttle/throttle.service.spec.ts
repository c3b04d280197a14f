import { describe, expect, it } from 'vitest';
import { ThrottleService, type RateChange } from './throttle.service.js';

describe(ThrottleService.name, () => {
  const make = () =>
    new ThrottleService({
      downloadRate: { unit: 'bytes/s', initial: 1000 },
      announceRate: { unit: 'requests/s', initial: 2 },
    });

  it('starts from the configured values', () => {
    expect(make().snapshot()).toEqual({ downloadRate: 1000, announceRate: 2 });
  });

  it('emits a change event only when the value changes', () => {
    const throttle = make();
    const seen: RateChange[] = [];
    throttle.onChange((c) => seen.push(c));
    throttle.set('downloadRate', 5000);
    throttle.set('downloadRate', 5000);
    expect(seen).toEqual([{ name: 'downloadRate', previous: 1000, rate: 5000 }]);
  });

  it('limits per key and follows live changes for existing keys', () => {
    const throttle = make();
    expect(throttle.tryTake('announceRate', '10.0.0.1')).toBe(true);
    expect(throttle.tryTake('announceRate', '10.0.0.1')).toBe(true);
    expect(throttle.tryTake('announceRate', '10.0.0.1')).toBe(false);
    expect(throttle.tryTake('announceRate', '10.0.0.2')).toBe(true);
    throttle.set('announceRate', 0);
    expect(throttle.tryTake('announceRate', '10.0.0.1')).toBe(true);
  });

  it('throws on an unknown limit name (a programming error, not user input)', () => {
    expect(() => make().set('bogus', 1)).toThrow(/unknown limit bogus/);
  });

  it('records who set each limit last (boot source, then PATCH or a file edit)', () => {
    const throttle = new ThrottleService({
      downloadRate: { unit: 'bytes/s', initial: 1000, source: 'file' },
      announceRate: { unit: 'requests/s', initial: 2 },
    });
    expect(Object.fromEntries(Object.entries(throttle.sources()).map(([k, v]) => [k, v.source]))).toEqual({
      downloadRate: 'file',
      announceRate: 'default',
    });
    throttle.set('downloadRate', 5000);
    expect(throttle.sources().downloadRate.source).toBe('patch');
    throttle.set('downloadRate', 5000, 'file');
    expect(throttle.sources().downloadRate.source).toBe('file');
  });
});
