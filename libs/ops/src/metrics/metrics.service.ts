import { readFileSync } from 'node:fs';
import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Where blob bytes came from — the one vocabulary of every `source` label: `origin` (the origin
 * registry), `proxy` (BitTorrent from a proxy), `peer` (BitTorrent from another agent), `relay`
 * (HTTP from a proxy, while its torrent does not exist yet or for a late piece).
 */
export type ByteSource = 'origin' | 'proxy' | 'peer' | 'relay';
const BYTE_SOURCES: readonly ByteSource[] = ['origin', 'proxy', 'peer', 'relay'];

/**
 * The process's Prometheus registry. One per app instance (not prom-client's global) so tests can
 * run several apps in one process. The app's own metric names get the `p2p_` prefix here, once;
 * prom-client's process and Node.js metrics keep their standard names (`process_cpu_seconds_total`,
 * `nodejs_heap_size_used_bytes`, …) so existing dashboards and alerts work unchanged.
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();

  constructor(appName: string) {
    this.registry.setDefaultLabels({ app: appName });
    collectDefaultMetrics({ register: this.registry });
    this.diskIo();
  }

  counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return this.getOr(name, () => new Counter({ name: `p2p_${name}`, help, labelNames, registers: [this.registry] }));
  }

  gauge<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[] = [],
    collect?: (this: Gauge<L>) => void | Promise<void>,
  ): Gauge<L> {
    return this.getOr(name, () => new Gauge({ name: `p2p_${name}`, help, labelNames, registers: [this.registry], collect }));
  }

  histogram<L extends string>(name: string, help: string, labelNames: readonly L[], buckets: number[]): Histogram<L> {
    return this.getOr(name, () => new Histogram({ name: `p2p_${name}`, help, labelNames, buckets, registers: [this.registry] }));
  }

  /**
   * Bytes this process made the kernel read from and write to storage (`/proc/self/io`
   * read_bytes/write_bytes: page-cache hits and unflushed overwrites excluded), so an operator sees
   * the disk load the cache puts on the node — the product tells them to watch it. Linux only:
   * elsewhere the two counters are not registered.
   */
  private diskIo(): void {
    const read = () => {
      try {
        return readFileSync('/proc/self/io', 'latin1');
      } catch {
        return undefined;
      }
    };
    if (read() === undefined) return;
    const field = (text: string | undefined, name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(text ?? '')?.[1] ?? 0);
    for (const [name, key, help] of [
      ['disk_read_bytes_total', 'read_bytes', 'Bytes the process read from storage (/proc/self/io read_bytes).'],
      [
        'disk_written_bytes_total',
        'write_bytes',
        "Bytes the process wrote to storage (/proc/self/io write_bytes): the cache's disk write load.",
      ],
    ] as const) {
      let seen = 0;
      new Counter({
        name: `p2p_${name}`,
        help,
        registers: [this.registry],
        collect() {
          // Counters only go up: set the kernel's running total through the difference.
          const now = field(read(), key);
          if (now > seen) this.inc(now - seen);
          seen = Math.max(seen, now);
        },
      });
    }
  }

  /** Blob bytes that arrived into this process, by source: shared by the fill (origin) and the swarm (the rest). */
  blobBytesReceived(): Counter<'source'> {
    const counter = this.counter(
      'blob_bytes_received_total',
      'Blob bytes received, by source (origin, proxy, peer, relay); from proxies and peers, pieces that verified only.',
      ['source'],
    );
    // Every series from 0: a series born at its first increment hides that increment from rate().
    for (const source of BYTE_SOURCES) counter.inc({ source }, 0);
    return counter;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  private getOr<M>(name: string, make: () => M): M {
    return (this.registry.getSingleMetric(`p2p_${name}`) as M | undefined) ?? make();
  }
}
