import type { Clock, ClockTimer } from '../time/clock.js';

/** One timer of a `ManualClock`. */
class ManualTimer implements ClockTimer {
  constructor(
    private readonly clock: ManualClock,
    readonly fn: () => void,
    readonly ms: number,
    public due: number,
  ) {}

  refresh(): this {
    this.clock.reschedule(this);
    return this;
  }
}

/**
 * A clock for specs: time stands still until the spec moves it (`advance`), and every timer is
 * visible (`pending`), so "no timer left behind" is an assertion, not a hope. Test-only code
 * (not compiled into dist, not exported by the library).
 */
export class ManualClock implements Clock {
  private time = 0;
  private readonly timers = new Set<ManualTimer>();

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    const timer = new ManualTimer(this, fn, ms, this.time + Math.max(0, ms));
    this.timers.add(timer);
    return timer;
  }

  clearTimeout(timer: ClockTimer | undefined): void {
    if (timer instanceof ManualTimer) this.timers.delete(timer);
  }

  /** Timers scheduled and not yet run or cleared. */
  get pending(): number {
    return this.timers.size;
  }

  /** The delays (ms, as asked) of the timers pending, for failure messages. */
  pendingDelays(): number[] {
    return [...this.timers].map((t) => t.ms);
  }

  /** @internal `refresh()` of a timer: due again its full delay from now (also after it ran). */
  reschedule(timer: ManualTimer): void {
    timer.due = this.time + Math.max(0, timer.ms);
    this.timers.add(timer);
  }

  /**
   * Moves time forward by `ms`, running each timer due on the way at its own time, in order;
   * before each one (and at the end) lets pending promise callbacks and I/O run (`settle`).
   */
  async advance(ms: number): Promise<void> {
    const target = this.time + ms;
    for (;;) {
      await settle();
      let next: ManualTimer | undefined;
      for (const t of this.timers) if (t.due <= target && (!next || t.due < next.due)) next = t;
      if (!next) break;
      this.time = Math.max(this.time, next.due);
      this.timers.delete(next);
      next.fn();
    }
    this.time = target;
    await settle();
  }
}

/**
 * Lets work already under way finish before time moves on: promise callbacks, stream ticks and
 * small real I/O (a few turns of the event loop; no real time is waited for).
 */
async function settle(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * Spins the event loop (no timers: works under fake ones) until `cond()` holds; throws after
 * `realMs` of wall time, so a spec waiting for something that never happens fails instead of hanging.
 */
export async function until(cond: () => boolean, what: string, realMs = 3000): Promise<void> {
  const deadline = performance.now() + realMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
