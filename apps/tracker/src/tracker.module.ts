import type { AddressInfo } from 'node:net';
import { Logger, Module, type DynamicModule, type OnApplicationShutdown } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { HealthIndicatorService } from '@nestjs/terminus';
import { OpsModule, ReadinessRegistry } from '#ops';
import { TrackerServer } from '#swarm';
import { AnnounceController } from './announce.controller.js';
import { scrapeProbe } from './scrape-probe.js';
import type { TrackerConfig } from './tracker.config.js';

/** Wiring only: the tracker server lives in libs/swarm. */
@Module({})
export class TrackerModule implements OnApplicationShutdown {
  constructor(private readonly tracker: TrackerServer) {}

  static forRoot(config: TrackerConfig): DynamicModule {
    const log = new Logger('Tracker');
    return {
      module: TrackerModule,
      imports: [
        OpsModule.forRoot({
          appName: 'tracker',
          config,
          limits: { announceRate: { unit: 'requests/s', initial: config.announceRate } },
        }),
      ],
      controllers: [AnnounceController],
      providers: [
        {
          provide: TrackerServer,
          useFactory: () =>
            new TrackerServer({
              intervalSeconds: config.announceInterval,
              peersCacheLength: config.peersCacheLength,
              onWarning: (err) => log.debug(`refused or malformed tracker request: ${err.message}`),
            }),
        },
        {
          provide: 'TRACKER_READINESS',
          inject: [ReadinessRegistry, HealthIndicatorService, HttpAdapterHost],
          useFactory: (registry: ReadinessRegistry, health: HealthIndicatorService, host: HttpAdapterHost) => {
            // "Ready" means the announce surface answers over HTTP, so it goes through the real server.
            const port = () => (host.httpAdapter.getHttpServer().address() as AddressInfo).port;
            registry.register('announce', () => scrapeProbe(health, port()));
          },
        },
      ],
    };
  }

  onApplicationShutdown(): Promise<void> {
    return this.tracker.close();
  }
}
