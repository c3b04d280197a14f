const SLOTS = 5;

/** Bytes per second over the last few seconds, O(1) per sample and without a timer. */
export class RateMeter {
  private readonly slots = new Float64Array(SLOTS);
  private second = Math.floor(Date.now() / 1000);
  total = 0;

  add(n: number, now = Date.now()): void {
    this.advance(now);
    this.slots[this.second % SLOTS] += n;
    this.total += n;
  }

  /** Average over the last full seconds (the current partial second excluded). */
  rate(now = Date.now()): number {
    this.advance(now);
    let sum = 0;
    for (let i = 1; i < SLOTS; i++) sum += this.slots[(this.second - i + SLOTS * 2) % SLOTS];
    return sum / (SLOTS - 1);
  }

  private advance(now: number): void {
    const s = Math.floor(now / 1000);
    if (s === this.second) return;
    const steps = Math.min(s - this.second, SLOTS);
    for (let i = 1; i <= steps; i++) this.slots[(this.second + i) % SLOTS] = 0;
    this.second = s;
  }
}
