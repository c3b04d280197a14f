import type { ThrottleGroupLike } from 'webtorrent';
import type { ThrottleService } from '#ops';

/**
 * Makes webtorrent's client-wide throttle draw from the process's own bucket for `name`.
 *
 * Why: webtorrent limits its wires with speed-limiter, whose bucket is separate from ours and
 * saves up a whole second of tokens. The agent's `downloadRate` also limits origin and relay
 * bytes (our bucket), so with two buckets the node could take up to twice its limit while both
 * ran, and BitTorrent burst a second's worth after an idle spell (a relay that hands over to the
 * swarm: measured 5.6–5.8 MB/s over 6 s at a 5 MB/s limit). One bucket holds the limit for the
 * node's traffic as a whole, with our burst (a quarter second).
 *
 * speed-limiter's Throttle calls `bucket.tryRemoveTokens(n)` and, when that fails,
 * `bucket.removeTokens(n, cb)`; ThrottleGroup.setRate writes `bucketSize`/`tokensPerInterval`
 * and reads the latter back as the group's rate (0 makes its throttles wait, -1 disables the
 * group: webtorrent maps our 0 = unlimited to -1 before it gets here, so our bucket is only
 * asked while a limit is set).
 */
export function shareThrottle(group: ThrottleGroupLike, throttle: ThrottleService, name: string): void {
  let rate = throttle.get(name);
  group.bucket = {
    get bucketSize(): number {
      // speed-limiter refuses a slice larger than the bucket; ours lends (goes into debt) instead.
      return Number.MAX_SAFE_INTEGER;
    },
    set bucketSize(_: number) {
      // The size is ours (burst seconds × rate), set when the rate changes.
    },
    get tokensPerInterval(): number {
      return rate;
    },
    set tokensPerInterval(value: number) {
      rate = value;
    },
    tryRemoveTokens(n: number): boolean {
      return throttle.takeNow(name, n);
    },
    removeTokens(n: number, done: (err: unknown, remaining: number | null) => void): boolean {
      throttle.take(name, n).then(
        () => done(null, 0),
        (err: unknown) => done(err, null),
      );
      return false;
    },
  };
}
