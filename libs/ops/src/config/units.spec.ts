import { describe, expect, it } from 'vitest';
import { formatBytes, parseDiskAmount, parseDuration, parseRate, parseSize } from './units.js';

describe('parseRate', () => {
  it.each([
    [0, 0],
    [20000000, 20000000],
    ['100MB', 100_000_000],
    ['100 MB/s', 100_000_000],
    ['20MiB', 20 * 2 ** 20],
    ['20mib/s', 20 * 2 ** 20],
    ['1.5GB', 1_500_000_000],
    ['512', 512],
    ['10k', 10_000],
  ])('%j → %d', (input, expected) => {
    expect(parseRate(input)).toBe(expected);
  });

  it.each([-5, 1.5, 'banana', '', '10 XB', '-1MB', null, true, {}, [], Number.MAX_VALUE, '1e9'])('rejects %j', (input) => {
    expect(parseRate(input)).toBeUndefined();
  });
});

describe('parseSize', () => {
  it('does not accept a rate suffix', () => {
    expect(parseSize('4MiB/s')).toBeUndefined();
    expect(parseSize('4MiB')).toBe(4 * 2 ** 20);
  });
});

describe('parseDuration', () => {
  it.each([
    [10, 10],
    ['500ms', 0.5],
    ['5m', 300],
    ['2h', 7200],
    ['30', 30],
  ])('%j → %d s', (input, expected) => {
    expect(parseDuration(input)).toBe(expected);
  });
  it.each([-1, 'soon', '5d', null])('rejects %j', (input) => {
    expect(parseDuration(input)).toBeUndefined();
  });
});

describe('formatBytes', () => {
  it('uses decimal units', () => {
    expect(formatBytes(20_000_000)).toBe('20 MB');
    expect(formatBytes(0)).toBe('0');
    expect(formatBytes(999)).toBe('999 B');
  });
});

describe('parseDiskAmount', () => {
  it('reads sizes as bytes and percentages as a fraction of the filesystem', () => {
    expect(parseDiskAmount('20%')).toEqual({ fraction: 0.2 });
    expect(parseDiskAmount(' 12.5 % ')).toEqual({ fraction: 0.125 });
    expect(parseDiskAmount('0%')).toEqual({ fraction: 0 });
    expect(parseDiskAmount('50GB')).toEqual({ bytes: 50e9 });
    expect(parseDiskAmount(1024)).toEqual({ bytes: 1024 });
  });
  it('refuses what is neither', () => {
    for (const bad of ['101%', '-5%', '%', 'lots', -1, null, '20 percent']) expect(parseDiskAmount(bad), String(bad)).toBeUndefined();
  });
});
