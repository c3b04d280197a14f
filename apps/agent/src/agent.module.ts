import { Module, type DynamicModule, type OnApplicationShutdown } from '@nestjs/common';
import { OpsModule } from '#ops';
import { RegistryMirrorController } from '#registry';
import { BlobSeeder, ProxyRing, SwarmClient, AdminTorrentsController } from '#swarm';
import type { AgentConfig } from './agent.config.js';
import { mirrorProviders } from './mirror.providers.js';
import { swarmProviders } from './swarm/swarm.providers.js';

/** Wiring only: the mirror and cache live in libs/registry, the swarm in libs/swarm. */
@Module({})
export class AgentModule implements OnApplicationShutdown {
  constructor(
    private readonly ring: ProxyRing,
    private readonly seeder: BlobSeeder,
    private readonly swarm: SwarmClient,
  ) {}

  static forRoot(config: AgentConfig): DynamicModule {
    return {
      module: AgentModule,
      imports: [
        OpsModule.forRoot({
          appName: 'agent',
          config,
          limits: {
            downloadRate: { unit: 'bytes/s', initial: config.downloadRate },
            uploadRate: { unit: 'bytes/s', initial: config.uploadRate },
          },
          dataDir: { path: config.dataDir, minFreeBytes: config.minFreeSpace },
        }),
      ],
      controllers: [AdminTorrentsController, RegistryMirrorController],
      providers: [...mirrorProviders, ...swarmProviders],
    };
  }

  async onApplicationShutdown(): Promise<void> {
    this.ring.stop();
    this.seeder.close();
    await this.swarm.destroy();
  }
}
