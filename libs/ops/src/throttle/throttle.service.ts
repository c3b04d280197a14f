import { EventEmitter } from 'node:events';
import { Injectable, Logger } from '@nestjs/common';
import { TokenBucket } from './token-bucket.js';

/** A named limit: its unit is bytes/s, except request limits such as the tracker's `announceRate`. */
export interface LimitSpec {
  unit: 'bytes/s' | 'requests/s';
  initial: number;
  /** Where `initial` came from (shown by `GET /admin/rate`); OpsModule fills it from the config loader. */
  source?: RateSource;
}

/**
 * Who set a limit's current value. PATCH and config file edits both change limits live; the later
 * change wins, and this says which one that was.
 */
export type RateSource = 'default' | 'env' | 'file' | 'patch';

interface Provenance {
  source: RateSource;
  updatedAt: Date;
}

export interface RateChange {
  name: string;
  previous: number;
  rate: number;
}

const MAX_KEYED = 50_000;

const SET_BY: Record<RateSource, string> = {
  patch: 'PATCH /admin/rate',
  file: 'a config file edit',
  env: 'the environment',
  default: 'default',
};

/**
 * The one throttle of a process: named token buckets initialised from config, changed live by
 * `PATCH /admin/rate`. Data paths either take from a bucket (`take`) or subscribe to `onChange`
 * to reconfigure an engine that throttles itself (webtorrent's client-wide limits).
 */
@Injectable()
export class ThrottleService {
  private readonly logger = new Logger(ThrottleService.name);
  private readonly buckets = new Map<string, TokenBucket>();
  private readonly keyed = new Map<string, Map<string, TokenBucket>>();
  private readonly events = new EventEmitter();
  private readonly provenance = new Map<string, Provenance>();

  constructor(readonly specs: Readonly<Record<string, LimitSpec>>) {
    const now = new Date();
    for (const [name, spec] of Object.entries(specs)) {
      this.buckets.set(name, newBucket(spec.initial, spec.unit));
      this.provenance.set(name, { source: spec.source ?? 'default', updatedAt: now });
    }
  }

  names(): string[] {
    return [...this.buckets.keys()];
  }

  /** Current value of every limit (0 = unlimited). */
  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.buckets].map(([name, b]) => [name, b.currentRate]));
  }

  get(name: string): number {
    return this.bucket(name).currentRate;
  }

  /** Who set each limit's current value, and when. */
  sources(): Record<string, { source: RateSource; updatedAt: Date }> {
    return Object.fromEntries([...this.provenance].map(([name, p]) => [name, { ...p }]));
  }

  /**
   * Sets a limit; `source` records who did (the later of a PATCH and a file edit wins, so the
   * source is simply the last writer, even when the value did not change).
   */
  set(name: string, rate: number, source: RateSource = 'patch'): void {
    const bucket = this.bucket(name);
    const previous = bucket.currentRate;
    bucket.setRate(rate);
    for (const b of this.keyed.get(name)?.values() ?? []) b.setRate(rate);
    this.provenance.set(name, { source, updatedAt: new Date() });
    if (previous !== rate) {
      this.logger.log({
        msg: `${name} changed from ${previous} to ${rate} ${this.specs[name].unit} (0 = unlimited) by ${SET_BY[source]}`,
        limit: name,
        previous,
        rate,
        source,
      });
      this.events.emit('change', { name, previous, rate } satisfies RateChange);
    }
  }

  /** Waits until `n` units of `name` may pass (data paths: bytes). */
  take(name: string, n: number, signal?: AbortSignal): Promise<void> {
    return this.bucket(name).take(n, signal);
  }

  /** Takes `n` units of `name` now if the bucket holds them; never waits (a fast path before `take`). */
  takeNow(name: string, n: number): boolean {
    return this.bucket(name).tryTake(n);
  }

  /**
   * Per-key limiting (e.g. per client IP) at the named rate; returns false when over the limit.
   * Keys are capped so a flood of distinct clients cannot grow memory without bound.
   */
  tryTake(name: string, key: string, n = 1): boolean {
    const rate = this.get(name);
    if (rate === 0) return true;
    let perKey = this.keyed.get(name);
    if (!perKey) this.keyed.set(name, (perKey = new Map<string, TokenBucket>()));
    let bucket = perKey.get(key);
    if (!bucket) {
      if (perKey.size >= MAX_KEYED) perKey.delete(perKey.keys().next().value as string);
      bucket = newBucket(rate, this.specs[name].unit);
      perKey.set(key, bucket);
    }
    return bucket.tryTake(n);
  }

  onChange(listener: (change: RateChange) => void): () => void {
    this.events.on('change', listener);
    return () => this.events.off('change', listener);
  }

  private bucket(name: string): TokenBucket {
    const bucket = this.buckets.get(name);
    if (!bucket) throw new Error(`unknown limit ${name}; known: ${this.names().join(', ')}`);
    return bucket;
  }
}

function newBucket(rate: number, unit: LimitSpec['unit']): TokenBucket {
  // Requests get a one-second burst; byte streams a quarter second (≥ 64 KiB) so ±10% holds.
  return unit === 'requests/s' ? new TokenBucket(rate, 1, 1) : new TokenBucket(rate);
}
