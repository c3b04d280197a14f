import { Module, type DynamicModule } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { OpsModule, ThrottleService, throttledStream } from '#ops';
import { OriginClient, OriginFetcher, RegistryModule } from '#registry';
import { SwarmBlobFetcher, SwarmModule } from '#swarm';
import type { AgentConfig } from './agent.config.js';

/** Wiring only: the mirror and cache live in libs/registry, the swarm in libs/swarm. */
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
        RegistryModule.forRoot<AgentConfig>({
          mirror: true,
          originBodyTimeout: (c) => c.get('originBodyTimeout', { infer: true }),
          fill: {
            inject: [ConfigService, OriginClient, ThrottleService, SwarmBlobFetcher],
            useFactory: (
              c: ConfigService<AgentConfig, true>,
              client: OriginClient,
              throttle: ThrottleService,
              swarm: SwarmBlobFetcher,
            ) => ({
              fetchers: [
                // Peers first when proxies are configured, then the owning proxy over HTTP for whatever a
                // stalled swarm left; the origin always last.
                ...(c.get('proxies', { infer: true }).length > 0 ? [swarm, swarm.relayFallback()] : []),
                // Origin bytes count against the node's downloadRate.
                new OriginFetcher(client, { throttle: () => throttledStream(throttle, 'downloadRate') }),
              ],
              stallTimeoutMs: c.get('stallTimeout', { infer: true }) * 1000,
              stallMinRate: c.get('stallMinRate', { infer: true }),
            }),
          },
        }),
        SwarmModule.forRoot<AgentConfig>({ role: 'agent', limits: { download: 'downloadRate', upload: 'uploadRate' } }),
      ],
    };
  }
}
