import { Module, type DynamicModule } from '@nestjs/common';
import { OpsModule } from '#ops';
import type { ProxyConfig } from './proxy.config.js';

/** Wiring only: torrent API controller and seeding live in libs. */
@Module({})
export class ProxyModule {
  static forRoot(config: ProxyConfig): DynamicModule {
    return {
      module: ProxyModule,
      imports: [
        OpsModule.forRoot({
          appName: 'proxy',
          config,
          limits: {
            uploadRate: { unit: 'bytes/s', initial: config.uploadRate },
            originRate: { unit: 'bytes/s', initial: config.originRate },
          },
          dataDir: { path: config.dataDir, minFreeBytes: config.minFreeSpace },
        }),
      ],
    };
  }
}
