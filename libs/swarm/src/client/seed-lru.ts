/**
 * Bookkeeping of what is seeded: a cap on entries (least recently used leave first) and a
 * time-to-live since last use. Pure (clock injected) so the rules are unit tested on their own.
 */
export class SeedLru {
  // Map order is recency order: touch() moves a key to the end.
  private readonly lastUsed = new Map<string, number>();

  constructor(
    private readonly maxEntries: number,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {
    if (maxEntries < 1) throw new RangeError('maxEntries must be at least 1');
  }

  get size(): number {
    return this.lastUsed.size;
  }

  has(key: string): boolean {
    return this.lastUsed.has(key);
  }

  /** Adds or refreshes `key`; returns the keys pushed out by the cap, least recently used first. */
  touch(key: string): string[] {
    this.lastUsed.delete(key);
    this.lastUsed.set(key, this.now());
    const evicted: string[] = [];
    for (const old of this.lastUsed.keys()) {
      if (this.lastUsed.size - evicted.length <= this.maxEntries) break;
      if (old !== key) evicted.push(old);
    }
    for (const k of evicted) this.lastUsed.delete(k);
    return evicted;
  }

  delete(key: string): void {
    this.lastUsed.delete(key);
  }

  /** Removes and returns the keys not used for longer than the ttl. */
  takeExpired(): string[] {
    const cutoff = this.now() - this.ttlMs;
    const expired: string[] = [];
    for (const [key, at] of this.lastUsed) {
      if (at > cutoff) break;
      expired.push(key);
    }
    for (const k of expired) this.lastUsed.delete(k);
    return expired;
  }

  /** Keys, least recently used first. */
  keys(): string[] {
    return [...this.lastUsed.keys()];
  }
}
