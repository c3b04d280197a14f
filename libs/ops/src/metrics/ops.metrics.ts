import { Injectable } from '@nestjs/common';
import { ReadinessRegistry } from '../health/readiness.registry.js';
import { ThrottleService } from '../throttle/throttle.service.js';
import { MetricsService } from './metrics.service.js';

/** How long one evaluation of the readiness checks serves scrapes (several Prometheus replicas scrape). */
const READINESS_REUSE_MS = 2_000;

/**
 * The operating state an operator alerts and graphs on, the same in every app: readiness per check
 * (so "agent not ready" is a query, not a kubelet event), the data dir's free space against its
 * floor, and the live limits (`PATCH /admin/rate` and config reloads show on the dashboard).
 */
@Injectable()
export class OpsMetrics {
  private last: { at: number; results: Promise<Record<string, CheckDetails>> } | undefined;

  constructor(metrics: MetricsService, throttle: ThrottleService, readiness: ReadinessRegistry) {
    const evaluate = (): Promise<Record<string, CheckDetails>> => {
      if (this.last && Date.now() - this.last.at < READINESS_REUSE_MS) return this.last.results;
      const results = Promise.all(
        readiness.all().map((check) =>
          check().then(
            (r) => r as Record<string, CheckDetails>,
            // A check that throws is down: its name is unknown here, so it counts under "check".
            (): Record<string, CheckDetails> => ({ check: { status: 'down' } }),
          ),
        ),
      ).then((all) => Object.assign({}, ...all) as Record<string, CheckDetails>);
      this.last = { at: Date.now(), results };
      return results;
    };
    metrics.gauge('ready', 'Readiness per check (1 ready, 0 not): what GET /readyz answers.', ['check'], async function collect() {
      this.reset();
      const results = await evaluate();
      for (const [check, details] of Object.entries(results)) this.set({ check }, details.status === 'up' ? 1 : 0);
    });
    metrics.gauge('data_dir_free_bytes', "Free bytes on the data dir's filesystem (for unprivileged users).", [], async function collect() {
      this.reset();
      const dir = (await evaluate()).dataDir as CheckDetails | undefined;
      if (typeof dir?.freeBytes === 'number') this.set(dir.freeBytes);
    });
    metrics.gauge(
      'data_dir_min_free_bytes',
      'The free-space floor: below it the cache takes nothing more and the app is not ready.',
      [],
      async function collect() {
        this.reset();
        const dir = (await evaluate()).dataDir as CheckDetails | undefined;
        if (typeof dir?.minFreeBytes === 'number') this.set(dir.minFreeBytes);
      },
    );
    metrics.gauge(
      'rate_limit',
      'Current limit per name: bytes/s (announceRate: requests/s per client); 0 = unlimited.',
      ['limit'],
      function collect() {
        for (const [limit, rate] of Object.entries(throttle.snapshot())) this.set({ limit }, rate);
      },
    );
  }
}

interface CheckDetails {
  status: string;
  freeBytes?: number;
  minFreeBytes?: number;
}
