import { systemClock, type Clock, type ClockTimer } from '../time/clock.js';

/**
 * A token bucket whose rate can change while callers wait.
 *
 * `take(n)` may overdraw the bucket (a 4 MiB piece is taken in one go) and then waits until the
 * debt is repaid, so long transfers average exactly `rate`. Waiters re-plan when the rate changes:
 * a `PATCH /admin/rate` from 1 MB/s to unlimited releases them at once instead of after their
 * old sleep.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly waiters = new Set<Waiter>();

  /**
   * @param rate units per second; 0 = unlimited. @param burstSeconds how much idle time may be saved up.
   * @param clock time for refills and waits (a manual one in specs: exact token arithmetic).
   */
  constructor(
    private rate: number,
    private readonly burstSeconds = 0.25,
    private readonly minBurst = 64 * 1024,
    private readonly clock: Clock = systemClock,
  ) {
    this.last = clock.now();
    this.tokens = this.capacity();
  }

  get currentRate(): number {
    return this.rate;
  }

  setRate(rate: number): void {
    this.refill();
    const before = this.rate === 0 ? 0 : this.capacity();
    this.rate = rate;
    // A raised limit applies at once: the extra burst it allows is granted now rather than earned
    // over the next second (an operator lifting announceRate 5 → 1000 expects 1000 to pass now).
    this.tokens = Math.min(this.tokens + Math.max(0, this.capacity() - before), this.capacity());
    for (const w of this.waiters) this.schedule(w);
  }

  /** Takes `n` units now if the bucket holds them (request limiting); never waits. */
  tryTake(n = 1): boolean {
    if (this.rate === 0) return true;
    this.refill();
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }

  /** Takes `n` units, resolving once the rate allows it; rejects with the signal's reason on abort. */
  take(n: number, signal?: AbortSignal): Promise<void> {
    if (this.rate === 0) return Promise.resolve();
    this.refill();
    this.tokens -= n;
    if (this.tokens >= 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, timer: undefined, signal, onAbort: undefined };
      if (signal) {
        if (signal.aborted) {
          // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- documented: rejects with whatever reason the caller aborted with
          reject(signal.reason);
          return;
        }
        waiter.onAbort = () => this.finish(waiter, signal.reason);
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.waiters.add(waiter);
      this.schedule(waiter);
    });
  }

  private schedule(w: Waiter): void {
    this.clock.clearTimeout(w.timer);
    if (this.rate === 0) {
      this.tokens = Math.max(this.tokens, 0);
      this.finish(w);
      return;
    }
    this.refill();
    const waitMs = this.tokens >= 0 ? 0 : (-this.tokens / this.rate) * 1000;
    w.timer = this.clock.setTimeout(() => this.finish(w), waitMs);
  }

  private finish(w: Waiter, error?: unknown): void {
    if (!this.waiters.delete(w)) return;
    this.clock.clearTimeout(w.timer);
    if (w.signal && w.onAbort) w.signal.removeEventListener('abort', w.onAbort);
    if (error !== undefined) w.reject(error);
    else w.resolve();
  }

  private capacity(): number {
    return Math.max(this.rate * this.burstSeconds, this.minBurst);
  }

  private refill(): void {
    const now = this.clock.now();
    if (this.rate > 0) this.tokens = Math.min(this.capacity(), this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
  }
}

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
  timer: ClockTimer | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}
