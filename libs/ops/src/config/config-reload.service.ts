import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { MetricsService } from '../metrics/metrics.service.js';
import { ThrottleService } from '../throttle/throttle.service.js';
import { APP_CONFIG } from '../tokens.js';
import { configOrigin } from './config-loader.js';
import { ConfigWatcher, type ReloadResult } from './config-watcher.js';

/**
 * Runs the app's ConfigWatcher for its lifetime: config file edits apply to the throttle's limits
 * (the same live path as `PATCH /admin/rate`) and are counted in `p2p_config_reloads_total`.
 * Apps started without a file (`p2p all --dev`, tests building config objects) have nothing to watch.
 */
@Injectable()
export class ConfigReloadService implements OnApplicationBootstrap, OnModuleDestroy {
  private watcher: ConfigWatcher<object> | undefined;

  constructor(
    @Inject(APP_CONFIG) private readonly config: object,
    private readonly throttle: ThrottleService,
    private readonly metrics: MetricsService,
  ) {}

  onApplicationBootstrap(): void {
    const origin = configOrigin(this.config);
    if (!origin?.file) return;
    const reloads = this.metrics.counter(
      'config_reloads_total',
      'Config file changes seen, by result: applied, rejected (invalid; nothing changed), restart_needed (valid, but keys other than the live rates changed).',
      ['result'],
    );
    for (const result of ['applied', 'rejected', 'restart_needed'] as const) reloads.inc({ result }, 0);
    this.watcher = new ConfigWatcher({
      running: this.config,
      origin: { ...origin, file: origin.file },
      liveKeys: this.throttle.names(),
      apply: (key, value) => this.throttle.set(key, value as number, 'file'),
      onResult: (result: ReloadResult) => reloads.inc({ result }),
      logger: new Logger('ConfigReload'),
    });
    this.watcher.start();
  }

  onModuleDestroy(): void {
    this.watcher?.stop();
  }
}
