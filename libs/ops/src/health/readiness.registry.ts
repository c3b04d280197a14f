import { Injectable } from '@nestjs/common';
import type { HealthIndicatorResult } from '@nestjs/terminus';

/** One readiness check: resolves to a terminus result (`up()`/`down()`), never throws for "not ready". */
export type ReadinessCheck = () => Promise<HealthIndicatorResult>;

/**
 * Where each module registers what must hold before the app takes traffic (data dir writable,
 * tracker answering…). `/readyz` runs them all; `/healthz` runs none (liveness has no dependencies).
 */
@Injectable()
export class ReadinessRegistry {
  private readonly checks = new Map<string, ReadinessCheck>();

  register(name: string, check: ReadinessCheck): void {
    this.checks.set(name, check);
  }

  all(): ReadinessCheck[] {
    return [...this.checks.values()];
  }
}
