import { Readable } from 'node:stream';
import { sleep, type Clock } from '#ops';
import type {
  ProxyApi,
  ProxyBlobQuery,
  RelayAnswer,
  RelayRequestOptions,
  TorrentAnswer,
  TorrentRequestOptions,
} from '../proxy/proxy-api.js';

/** How the fake answers a torrent request. */
export type TorrentScript =
  /** A torrent (any bytes: garbage, cut short, another blob's) with the peer-port header, `delayMs` late on the clock. */
  | { answer: 'torrent'; metainfo: Buffer; peerPort?: number; delayMs?: number }
  /** An error status (`reason` as read from its OCI error body). */
  | { answer: 'status'; status: number; reason?: string }
  /** No answer at all until the request is aborted (then it rejects with the abort reason). */
  | { answer: 'never' }
  /** Unreachable, or a broken answer the client throws for. */
  | { answer: 'throw'; error: Error };

/** How the fake answers a relay request. */
export type RelayScript =
  /**
   * `data` (the whole blob) from the asked offset, in `chunk`-sized pieces (default 64 KiB); at
   * absolute byte `cutAt` the body errors (a connection cut, the default), ends early or hangs.
   * With `everyMs`, one chunk per `everyMs` on the clock (a relay at a known pace).
   */
  | { answer: 'bytes'; data: Buffer; cutAt?: number; cut?: 'error' | 'end' | 'hang'; chunk?: number; everyMs?: number }
  | { answer: 'status'; status: number; reason?: string }
  | { answer: 'never' }
  | { answer: 'throw'; error: Error };

/** One request the fake received. */
export interface FakeProxyCall {
  kind: 'torrent' | 'relay';
  proxy: string;
  digest: string;
  offset?: number;
  end?: number;
  signal: AbortSignal;
  /** The answer promise settled (answered or rejected): false means a request left hanging. */
  settled: boolean;
  /** The relay body, once answered with bytes. */
  body?: Readable;
}

/**
 * An in-memory proxy API: each request is answered by the next script of its kind (the last one
 * repeats), and recorded. Requests honour their abort signal as undici's do (a pending request
 * rejects, a body being read is destroyed). Test-only.
 */
export class FakeProxyApi implements ProxyApi {
  readonly calls: FakeProxyCall[] = [];
  private torrentScripts: TorrentScript[] = [{ answer: 'never' }];
  private relayScripts: RelayScript[] = [{ answer: 'never' }];

  /** `clock` paces delayed answers and relays (`delayMs`, `everyMs`). */
  constructor(private readonly clock?: Clock) {}

  /** The answers to the next torrent requests, in order; the last repeats. */
  whenTorrent(...scripts: TorrentScript[]): this {
    this.torrentScripts = scripts;
    return this;
  }

  /** The answers to the next relay requests, in order; the last repeats. */
  whenRelay(...scripts: RelayScript[]): this {
    this.relayScripts = scripts;
    return this;
  }

  /** Requests whose answer never came and that nobody aborted, and relay bodies still open. */
  open(): FakeProxyCall[] {
    return this.calls.filter((c) => !c.settled || (c.body !== undefined && !c.body.destroyed && !c.body.readableEnded));
  }

  of(kind: FakeProxyCall['kind']): FakeProxyCall[] {
    return this.calls.filter((c) => c.kind === kind);
  }

  torrent(proxy: string, blob: ProxyBlobQuery, opts: TorrentRequestOptions): Promise<TorrentAnswer> {
    const call: FakeProxyCall = { kind: 'torrent', proxy, digest: blob.digest, signal: opts.signal, settled: false };
    this.calls.push(call);
    const script = next(this.torrentScripts);
    const delayMs = script.answer === 'torrent' ? script.delayMs : undefined;
    return this.answer(call, delayMs, () => {
      switch (script.answer) {
        case 'torrent':
          return { ok: true, metainfo: script.metainfo, peerPort: script.peerPort ?? 6882 };
        case 'status':
          return { ok: false, status: script.status, reason: script.reason ?? '' };
        case 'throw':
          throw script.error;
        case 'never':
          return undefined;
      }
    });
  }

  relay(proxy: string, blob: ProxyBlobQuery, opts: RelayRequestOptions): Promise<RelayAnswer> {
    const call: FakeProxyCall = {
      kind: 'relay',
      proxy,
      digest: blob.digest,
      offset: opts.offset,
      end: opts.end,
      signal: opts.signal,
      settled: false,
    };
    this.calls.push(call);
    const script = next(this.relayScripts);
    return this.answer(call, undefined, () => {
      switch (script.answer) {
        case 'bytes': {
          const body = relayBody(script, opts, this.clock);
          call.body = body;
          return { ok: true, body };
        }
        case 'status':
          return { ok: false, status: script.status, reason: script.reason ?? '' };
        case 'throw':
          throw script.error;
        case 'never':
          return undefined;
      }
    });
  }

  /**
   * Answers on the next tick (as a network would, never synchronously), or `delayMs` later on the
   * clock; undefined from `make`: no answer until aborted.
   */
  private answer<T>(call: FakeProxyCall, delayMs: number | undefined, make: () => T | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const fail = (err: Error) => {
        call.settled = true;
        reject(err);
      };
      if (call.signal.aborted) {
        fail(call.signal.reason as Error);
        return;
      }
      const onAbort = () => fail(call.signal.reason as Error);
      call.signal.addEventListener('abort', onAbort, { once: true });
      const later = (fn: () => void) =>
        delayMs !== undefined && this.clock ? void sleep(this.clock, delayMs, call.signal).then(fn) : setImmediate(fn);
      later(() => {
        if (call.settled) return;
        let value: T | undefined;
        try {
          value = make();
        } catch (err) {
          call.signal.removeEventListener('abort', onAbort);
          fail(err as Error);
          return;
        }
        if (value === undefined) return;
        call.signal.removeEventListener('abort', onAbort);
        call.settled = true;
        resolve(value);
      });
    });
  }
}

function next<T>(scripts: T[]): T {
  const script = scripts.length > 1 ? scripts.shift() : scripts[0];
  if (script === undefined) throw new Error('fake proxy: no script');
  return script;
}

/** The relay body of a 'bytes' script for [offset, end), cut at `cutAt` as scripted; destroyed when the request aborts. */
function relayBody(script: Extract<RelayScript, { answer: 'bytes' }>, opts: RelayRequestOptions, clock: Clock | undefined): Readable {
  const stop = Math.min(opts.end ?? script.data.length, script.data.length);
  const cutAt = script.cutAt !== undefined && script.cutAt < stop ? script.cutAt : undefined;
  const chunk = script.chunk ?? 64 * 1024;
  let pos = opts.offset;
  const everyMs = script.everyMs;
  const paced = new AbortController();
  const later = (fn: () => void) => (everyMs !== undefined && clock ? void sleep(clock, everyMs, paced.signal).then(fn) : setImmediate(fn));
  const body = new Readable({
    read() {
      const until = cutAt ?? stop;
      if (pos < until) {
        const end = Math.min(until, pos + chunk);
        const part = Buffer.from(script.data.subarray(pos, end));
        pos = end;
        // Off the current tick, as network chunks arrive.
        later(() => {
          if (!body.destroyed) body.push(part);
        });
        return;
      }
      if (cutAt === undefined || script.cut === 'end') body.push(null);
      else if (script.cut !== 'hang') setImmediate(() => body.destroy(new Error('other side closed')));
    },
  });
  const onAbort = () => body.destroy(opts.signal.reason as Error);
  opts.signal.addEventListener('abort', onAbort, { once: true });
  body.once('close', () => {
    opts.signal.removeEventListener('abort', onAbort);
    // No paced chunk (and its timer) outlives the body.
    paced.abort();
  });
  return body;
}
