import { Module, type DynamicModule } from '@nestjs/common';
import { OpsModule, ThrottleService, throttledStream } from '#ops';
import { OriginClient, OriginFetcher, RegistryModule } from '#registry';
import { BlobSeeder, hashPiecesInto, SwarmModule } from '#swarm';
import type { ProxyConfig } from './proxy.config.js';

/** Wiring only: origin path and cache from libs/registry, seeding and the proxy API from libs/swarm. */
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
        RegistryModule.forRoot({
          fill: {
            inject: [OriginClient, ThrottleService, BlobSeeder],
            useFactory: (client: OriginClient, throttle: ThrottleService, seeder: BlobSeeder) => ({
              // The proxy's only fetcher is the origin, limited by originRate; concurrent callers share one fill.
              fetchers: [new OriginFetcher(client, { throttle: () => throttledStream(throttle, 'originRate') })],
              stallTimeoutMs: 60_000,
              observe: hashPiecesInto(seeder),
            }),
          },
        }),
        SwarmModule.forRoot<ProxyConfig>({
          role: 'proxy',
          limits: { upload: 'uploadRate' },
          uploadSlots: (c) => c.get('uploadSlots', { infer: true }),
        }),
      ],
    };
  }
}
