/** A timer from `Clock.setTimeout`; `refresh()` restarts it with its original delay. */
export interface ClockTimer {
  refresh(): unknown;
}

/**
 * Time as seen by code that waits (stall, torrent and rescue timeouts, token buckets): the
 * system's in production, a manual one in specs, so a 10 s timeout costs a spec one call rather
 * than 10 s (libs/ops/src/testing/manual-clock.ts).
 */
export interface Clock {
  /** Milliseconds on a monotonic scale: only differences mean anything. */
  now(): number;
  /** Runs `fn` once, `ms` from now. */
  setTimeout(fn: () => void, ms: number): ClockTimer;
  /** Cancels a timer of this clock; undefined or an expired timer: nothing. */
  clearTimeout(timer: ClockTimer | undefined): void;
}

/**
 * The process's clock. The globals are looked up at each call, not captured once, so vitest's
 * fake timers apply to code running on it too.
 */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout | undefined),
};

/**
 * Resolves after `ms` on `clock`, or as soon as `signal` aborts (never rejects): the timer is
 * cleared either way, so an abandoned wait leaves nothing scheduled behind.
 */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clock.clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = clock.setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
