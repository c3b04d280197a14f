import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The process's Prometheus registry. One per app instance (not prom-client's global) so tests can
 * run several apps in one process. Metric names get the `p2p_` prefix here, once.
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();

  constructor(appName: string) {
    this.registry.setDefaultLabels({ app: appName });
    collectDefaultMetrics({ register: this.registry, prefix: 'p2p_' });
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

  render(): Promise<string> {
    return this.registry.metrics();
  }

  private getOr<M>(name: string, make: () => M): M {
    return (this.registry.getSingleMetric(`p2p_${name}`) as M | undefined) ?? make();
  }
}
