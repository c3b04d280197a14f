import { describe, expect, it } from 'vitest';
import { SeedLru } from './seed-lru.js';

describe(SeedLru.name, () => {
  it('evicts the least recently used entries beyond the cap', () => {
    let t = 0;
    const lru = new SeedLru(2, 1000, () => t);
    expect(lru.touch('a')).toEqual([]);
    t++;
    expect(lru.touch('b')).toEqual([]);
    t++;
    lru.touch('a');
    t++;
    expect(lru.touch('c')).toEqual(['b']);
    expect(lru.keys()).toEqual(['a', 'c']);
  });

  it('expires entries unused for longer than the ttl and keeps refreshed ones', () => {
    let t = 0;
    const lru = new SeedLru(10, 100, () => t);
    lru.touch('a');
    lru.touch('b');
    t = 60;
    lru.touch('a');
    t = 101;
    expect(lru.takeExpired()).toEqual(['b']);
    expect(lru.has('a')).toBe(true);
    t = 161;
    expect(lru.takeExpired()).toEqual(['a']);
    expect(lru.size).toBe(0);
  });

  it('never evicts the entry just touched even with a cap of one', () => {
    const lru = new SeedLru(1, 1000, () => 0);
    lru.touch('a');
    expect(lru.touch('b')).toEqual(['a']);
    expect(lru.touch('b')).toEqual([]);
    expect(lru.keys()).toEqual(['b']);
  });
});
