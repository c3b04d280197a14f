import type { ServerResponse } from 'node:http';
import type { Writable } from 'node:stream';
import { Logger } from '@nestjs/common';
import { durationMs } from '#ops';
import type { FastifyReply } from 'fastify';
import { DestinationClosedError } from '../cache/pooled-copy.js';
import { DigestMismatchError } from '../oci/oci.errors.js';
import { CachedBlobCorruptError } from '../sources/cached-blob.source.js';
import { ClientIdleWatchdog } from './client-idle.watchdog.js';
import type { BlobOutcome, RegistryMetrics } from './registry.metrics.js';

/** How blob bodies are sent (the agent's config). */
export interface BlobDeliveryOptions {
  /** A client that takes no bytes of a blob body for this long is cut, ms (0 = never). */
  clientIdleTimeoutMs: number;
}

/** A blob response as the mirror produced it. */
export interface BlobBody {
  readonly source: string;
  copyTo(dest: Writable): Promise<void>;
}

/**
 * Sends blob bodies and accounts for each: written straight into the socket through pooled buffers
 * (see pooledCopy), cut when the client takes nothing for `clientIdleTimeout`, and closed by one
 * request log line with the outcome — `complete`, `client-gone`, or `cut:<reason>` — plus the bytes
 * the connection accepted, the source and the duration, counted in `p2p_blob_responses_total`.
 * A response cut mid-body never looks complete to the client (the connection is destroyed).
 */
export class BlobDelivery {
  private readonly logger = new Logger(BlobDelivery.name);
  readonly idle: ClientIdleWatchdog;

  constructor(
    options: BlobDeliveryOptions,
    private readonly metrics: RegistryMetrics,
  ) {
    this.idle = new ClientIdleWatchdog(options.clientIdleTimeoutMs);
  }

  /** Hijacks `reply` and sends `status`, `headers` and the blob; `done` runs once the response is over. */
  deliver(
    reply: FastifyReply,
    response: { status: number; headers: Record<string, string | string[]>; blob: BlobBody },
    what: { repository: string; digest: string },
    done: () => void,
  ): void {
    const raw = reply.raw;
    const length = Number(response.headers['content-length']);
    const meter = { bytes: 0 };
    let outcome: BlobOutcome | undefined;
    const settle = (result: BlobOutcome, reason?: string, detail?: string) => {
      if (outcome) return;
      outcome = result;
      unwatch();
      this.record(reply, response.blob.source, what, result, reason, detail, meter.bytes, length);
    };
    // Blob bytes bypass Fastify's stream piping so they can flow through pooled buffers; the request
    // still counts in the onResponse metrics (they hang off the response's 'finish').
    void reply.hijack();
    raw.writeHead(response.status, response.headers);
    const unwatch = this.idle.watch(raw.socket, () => {
      settle('cut_idle', 'idle', `the client took no bytes for ${this.idle.timeoutMs / 1000}s`);
      raw.destroy();
    });
    raw.once('finish', () => settle('complete'));
    raw.once('close', () => {
      if (!raw.writableFinished) settle('client_gone');
      done();
    });
    response.blob.copyTo(metered(raw, meter)).then(
      () => raw.end(),
      (err: unknown) => {
        if (err instanceof DestinationClosedError || raw.destroyed) settle('client_gone');
        else settle('cut_error', cutReason(err), err instanceof Error ? err.message : String(err));
        // Failing mid-response (digest mismatch, corrupt cache file, origin gone) must cut the
        // connection so the client sees a failed download instead of a short or wrong blob.
        raw.destroy();
      },
    );
  }

  private record(
    reply: FastifyReply,
    source: string,
    what: { repository: string; digest: string },
    outcome: BlobOutcome,
    reason: string | undefined,
    detail: string | undefined,
    sent: number,
    length: number,
  ): void {
    this.metrics.blobResponse(source, outcome);
    const shown = outcome === 'complete' ? 'complete' : outcome === 'client_gone' ? 'client-gone' : `cut:${reason}`;
    const line = {
      msg: 'blob response',
      digest: what.digest,
      repo: what.repository,
      status: reply.raw.statusCode,
      outcome: shown,
      bytes: sent,
      length,
      source,
      durationMs: durationMs(reply.elapsedTime),
      ...(detail ? { detail } : {}),
    };
    if (outcome === 'cut_error') this.logger.warn(line);
    else this.logger.log(line);
  }
}

/** A short word for why a body was cut (the log line's `cut:<reason>`). */
function cutReason(err: unknown): string {
  if (err instanceof CachedBlobCorruptError) return 'corrupt-cache-file';
  if (err instanceof DigestMismatchError) return 'digest-mismatch';
  return 'source-error';
}

/**
 * `res` as a blob copy sees it, counting the bytes the connection accepted (write callbacks
 * without error): what the client can have received, for the log line. Everything else is `res`.
 */
function metered(res: ServerResponse, meter: { bytes: number }): Writable {
  const write = (chunk: Buffer, encoding?: BufferEncoding | ((err?: Error | null) => void), cb?: (err?: Error | null) => void): boolean => {
    const callback = typeof encoding === 'function' ? encoding : cb;
    return res.write(chunk, (err) => {
      if (!err) meter.bytes += chunk.length;
      callback?.(err);
    });
  };
  return new Proxy(res, {
    get(target, prop) {
      if (prop === 'write') return write;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
