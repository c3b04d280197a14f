import { Logger, Module, type DynamicModule, type Provider } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { TerminusModule } from '@nestjs/terminus';
import { ADMIN_TOKEN, AdminTokenGuard } from './admin/admin-token.guard.js';
import { SwarmTokenGuard } from './admin/swarm-token.guard.js';
import { rateControllerFor } from './admin/rate.controller.js';
import { readSecret } from './admin/secrets.js';
import type { BaseAppConfig } from './config/base.config.js';
import { configOrigin } from './config/config-loader.js';
import { ConfigReloadService } from './config/config-reload.service.js';
import { DataDirIndicator } from './health/data-dir.indicator.js';
import { HealthController } from './health/health.controller.js';
import { ReadinessRegistry } from './health/readiness.registry.js';
import { MetricsController } from './metrics/metrics.controller.js';
import { MetricsService } from './metrics/metrics.service.js';
import { OpsMetrics } from './metrics/ops.metrics.js';
import { ThrottleService, type LimitSpec } from './throttle/throttle.service.js';
import { LOADED_CONFIG, SWARM_TOKEN } from './tokens.js';

export interface OpsModuleOptions {
  appName: string;
  config: BaseAppConfig;
  /** The app's named limits (config key → unit and initial value). */
  limits: Record<string, LimitSpec>;
  /** Apps with a data dir get a readiness check for it. */
  dataDir?: { path: string; minFreeBytes: number };
  env?: NodeJS.ProcessEnv;
}

/**
 * Cross-cutting pieces, written once for all apps: typed config (ConfigService), health and readiness, metrics,
 * the throttle and its admin API, admin and swarm tokens. Global so feature modules just inject.
 */
@Module({})
export class OpsModule {
  static forRoot(options: OpsModuleOptions): DynamicModule {
    const env = options.env ?? process.env;
    const admin = readSecret({ env: 'P2P_ADMIN_TOKEN', file: options.config.adminTokenFile }, env);
    const swarm = readSecret({ env: 'P2P_SWARM_TOKEN', file: options.config.swarmTokenFile }, env);
    const providers: Provider[] = [
      { provide: LOADED_CONFIG, useValue: options.config },
      { provide: ThrottleService, useValue: new ThrottleService(withSources(options.limits, options.config)) },
      ConfigReloadService,
      { provide: MetricsService, useValue: new MetricsService(options.appName) },
      { provide: ADMIN_TOKEN, useValue: admin.value },
      { provide: SWARM_TOKEN, useValue: swarm.value },
      AdminTokenGuard,
      SwarmTokenGuard,
      ReadinessRegistry,
      DataDirIndicator,
      OpsMetrics,
      {
        provide: 'OPS_BOOT_NOTES',
        inject: [ReadinessRegistry, DataDirIndicator],
        useFactory: (registry: ReadinessRegistry, indicator: DataDirIndicator) => {
          const dir = options.dataDir;
          if (dir) registry.register('dataDir', () => indicator.check(dir.path, dir.minFreeBytes));
          const log = new Logger(OpsModule.name);
          log.log({
            msg: `admin API ${admin.value ? 'on' : 'off'}: token ${admin.origin}`,
            adminApiOn: Boolean(admin.value),
            tokenFrom: admin.origin,
          });
          log.log({
            msg: `swarm token ${swarm.value ? 'set' : 'not set'}: ${swarm.origin}`,
            swarmTokenSet: Boolean(swarm.value),
            tokenFrom: swarm.origin,
          });
          for (const note of configOrigin(options.config)?.notes ?? []) log.warn({ msg: note });
          return { adminToken: admin.origin, swarmToken: swarm.origin };
        },
      },
    ];
    return {
      module: OpsModule,
      global: true,
      imports: [
        TerminusModule.forRoot({ errorLogStyle: 'json', gracefulShutdownTimeoutMs: 0 }),
        // The one way config reaches providers: ConfigService over the values loadConfig validated
        // (file, P2P_* variables, defaults; units turned into numbers), typed by the app's config
        // class (`ConfigService<AgentConfig, true>`). Live keys changed by a config file reload
        // arrive through its set()/changes$ (see ConfigReloadService).
        ConfigModule.forRoot({
          ignoreEnvFile: true,
          // Validated once by loadConfig; process.env must not shadow a key by its bare name.
          skipProcessEnv: true,
          isGlobal: true,
          // ConfigModule wants the plain values; the class prototype is deliberately left behind.
          // eslint-disable-next-line @typescript-eslint/no-misused-spread
          load: [() => ({ ...options.config })],
        }),
      ],
      controllers: [HealthController, MetricsController, rateControllerFor(Object.keys(options.limits))],
      providers,
      exports: [
        TerminusModule,
        ThrottleService,
        MetricsService,
        ADMIN_TOKEN,
        SWARM_TOKEN,
        AdminTokenGuard,
        SwarmTokenGuard,
        ReadinessRegistry,
        'OPS_BOOT_NOTES',
      ],
    };
  }
}

/** Marks each limit's initial value with where the loader found it (file, env, default) for GET /admin/rate. */
function withSources(limits: Record<string, LimitSpec>, config: object): Record<string, LimitSpec> {
  const sources = configOrigin(config)?.sources;
  if (!sources) return limits;
  return Object.fromEntries(Object.entries(limits).map(([name, spec]) => [name, { source: sources[name], ...spec }]));
}
