import { Transform, type TransformCallback } from 'node:stream';
import type { ThrottleService } from './throttle.service.js';

/**
 * A pass-through stream that charges every chunk to the named limit(s) before passing it on, so
 * backpressure carries the limit upstream (to the socket we read from). Live rate changes apply to
 * the next chunk.
 */
export function throttledStream(throttle: ThrottleService, ...limits: string[]): Transform {
  const ac = new AbortController();
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      Promise.all(limits.map((l) => throttle.take(l, chunk.length, ac.signal))).then(
        () => done(null, chunk),
        (err: unknown) => done(err as Error),
      );
    },
    destroy(err, cb) {
      ac.abort(err ?? new Error('stream closed'));
      cb(err);
    },
  });
}
