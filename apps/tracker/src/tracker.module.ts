import { Module, type DynamicModule } from '@nestjs/common';
import { OpsModule } from '#ops';
import { TrackerServerModule } from '#tracker';
import type { TrackerConfig } from './tracker.config.js';

/** Wiring only: the tracker server lives in libs/tracker. */
@Module({})
export class TrackerModule {
  static forRoot(config: TrackerConfig): DynamicModule {
    return {
      module: TrackerModule,
      imports: [
        OpsModule.forRoot({
          appName: 'tracker',
          config,
          limits: { announceRate: { unit: 'requests/s', initial: config.announceRate } },
        }),
        TrackerServerModule.forRoot(),
      ],
    };
  }
}
