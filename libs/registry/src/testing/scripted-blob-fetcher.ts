import { Readable } from 'node:stream';
import type { BlobFetcher, BlobRequest, FetchedBlob } from '../sources/blob-source.js';

/** What a `ScriptedBlobFetcher` does when asked. */
export interface FetcherScript {
  /** Serve nothing: the fill moves on (a refusal, a blob too small for it). */
  refuse?: boolean;
  /** Fail the stream at this absolute byte (a connection cut). */
  failAt?: number;
  /** End the stream early, cleanly, at this absolute byte. */
  endAt?: number;
  /** Stop sending at this absolute byte and never end (a stall). */
  hangAt?: number;
  /** Size to report instead of the blob's. */
  size?: number;
}

/**
 * An in-memory fetcher (the origin, or a relay) serving `data` from any offset in `chunk`-sized
 * pieces, one per event-loop turn, as scripted; records the offsets it was asked for and whether
 * its streams were closed. Test-only.
 */
export class ScriptedBlobFetcher implements BlobFetcher {
  readonly offsets: number[] = [];
  readonly streams: Readable[] = [];
  private scripts: FetcherScript[] = [{}];

  constructor(
    readonly name: string,
    private readonly data: Buffer,
    private readonly chunk = 64 * 1024,
  ) {}

  /** The next calls' scripts, in order; the last repeats. */
  script(...scripts: FetcherScript[]): this {
    this.scripts = scripts;
    return this;
  }

  /** Streams handed out and not closed. */
  open(): Readable[] {
    return this.streams.filter((s) => !s.destroyed && !s.readableEnded);
  }

  fetch(_request: BlobRequest, offset: number, signal: AbortSignal): Promise<FetchedBlob | undefined> {
    this.offsets.push(offset);
    const script = (this.scripts.length > 1 ? this.scripts.shift() : this.scripts[0]) ?? {};
    if (script.refuse) return Promise.resolve(undefined);
    const { data, chunk } = this;
    let pos = offset;
    const stream = new Readable({
      read() {
        setImmediate(() => {
          if (stream.destroyed) return;
          if (script.failAt !== undefined && pos >= script.failAt) return void stream.destroy(new Error(`cut at byte ${pos}`));
          if (script.hangAt !== undefined && pos >= script.hangAt) return;
          const stop = Math.min(data.length, script.endAt ?? data.length, script.failAt ?? Infinity, script.hangAt ?? Infinity);
          if (pos >= stop) return void stream.push(null);
          const end = Math.min(stop, pos + chunk);
          const part = Buffer.from(data.subarray(pos, end));
          pos = end;
          stream.push(part);
        });
      },
    });
    signal.addEventListener('abort', () => stream.destroy(), { once: true });
    this.streams.push(stream);
    return Promise.resolve({ size: script.size ?? data.length, stream });
  }
}
