import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService, type HealthCheckResult } from '@nestjs/terminus';
import { ReadinessRegistry } from './readiness.registry.js';

/** Liveness and readiness for Kubernetes probes; both stay open (no admin token). */
@Controller()
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly readiness: ReadinessRegistry,
  ) {}

  /** Liveness: the event loop answers. No dependency is checked, so a full disk never restarts the pod. */
  @Get('healthz')
  @HealthCheck()
  live(): Promise<HealthCheckResult> {
    return this.health.check([]);
  }

  /** Readiness: every registered check; 503 with each failing check's reason when one is down. */
  @Get('readyz')
  @HealthCheck()
  ready(): Promise<HealthCheckResult> {
    return this.health.check(this.readiness.all());
  }
}
