import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type { Subscription } from 'rxjs';
import { MetricsService } from '../metrics/metrics.service.js';
import { ThrottleService } from '../throttle/throttle.service.js';
import { LOADED_CONFIG } from '../tokens.js';
import { configOrigin } from './config-loader.js';
import { ConfigWatcher, type ReloadResult } from './config-watcher.js';

/**
 * Runs the app's ConfigWatcher for its lifetime: a config file edit that changes a live key (the
 * throttle's limits) is published through ConfigService (`set()`, seen on `changes$` by whoever
 * follows that key: the throttle, like `PATCH /admin/rate`); every reload is counted in
 * `p2p_config_reloads_total`. Apps started without a file (`p2p all --dev`, tests building config
 * objects) have nothing to watch.
 */
@Injectable()
export class ConfigReloadService implements OnApplicationBootstrap, OnModuleDestroy {
  private watcher: ConfigWatcher<object> | undefined;
  private following: Subscription | undefined;

  constructor(
    @Inject(LOADED_CONFIG) private readonly config: object,
    private readonly configService: ConfigService<Record<string, unknown>, true>,
    private readonly throttle: ThrottleService,
    private readonly metrics: MetricsService,
  ) {}

  onApplicationBootstrap(): void {
    const limits = new Set(this.throttle.names());
    this.following = this.configService.changes$.subscribe(({ path, newValue }) => {
      if (limits.has(path)) this.throttle.set(path, newValue as number, 'file');
    });
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
      liveKeys: [...limits],
      // Note: ConfigService.set also writes process.env[key] (bare camelCase name); nothing reads those.
      apply: (key, value) => {
        this.configService.set(key, value);
      },
      onResult: (result: ReloadResult) => reloads.inc({ result }),
      logger: new Logger('ConfigReload'),
    });
    this.watcher.start();
  }

  onModuleDestroy(): void {
    this.watcher?.stop();
    this.following?.unsubscribe();
  }
}
