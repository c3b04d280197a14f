import { Module, type DynamicModule } from '@nestjs/common';
import { OpsModule } from '#ops';
import { RegistryMirrorController } from '#registry';
import type { AgentConfig } from './agent.config.js';
import { mirrorProviders } from './mirror.providers.js';

/** Wiring only: the mirror, cache and swarm live in libs. */
@Module({})
export class AgentModule {
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
      controllers: [RegistryMirrorController],
      providers: mirrorProviders,
    };
  }
}
