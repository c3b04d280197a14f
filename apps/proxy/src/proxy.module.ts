import { Module, type DynamicModule, type OnApplicationShutdown } from '@nestjs/common';
import { OpsModule } from '#ops';
import { BlobSeeder, SwarmClient, AdminTorrentsController } from '#swarm';
import type { ProxyConfig } from './proxy.config.js';
import { proxyProviders } from './proxy.providers.js';
import { ProxyApiController } from './proxy-api.controller.js';

/** Wiring only: origin path and cache from libs/registry, seeding from libs/swarm. */
@Module({})
export class ProxyModule implements OnApplicationShutdown {
  constructor(
    private readonly swarm: SwarmClient,
    private readonly seeder: BlobSeeder,
  ) {}

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
      controllers: [ProxyApiController, AdminTorrentsController],
      providers: proxyProviders,
    };
  }

  async onApplicationShutdown(): Promise<void> {
    this.seeder.close();
    await this.swarm.destroy();
  }
}
