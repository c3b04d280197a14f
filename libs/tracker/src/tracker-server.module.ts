import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Logger, Module, type DynamicModule, type OnApplicationShutdown } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { HttpAdapterHost } from '@nestjs/core';
import { HealthIndicatorService } from '@nestjs/terminus';
import { MetricsService, ReadinessRegistry, SWARM_TOKEN, ThrottleService } from '#ops';
import { scrapeProbe } from './scrape-probe.js';
import type { TrackerServerConfig } from './tracker.config.js';
import { TrackerServer } from './tracker-server.js';

const TRACKER_READINESS = Symbol('TRACKER_READINESS');

/**
 * The tracker server as the app's module: built from the validated config (ConfigService), its
 * announce limit is the `announceRate` throttle limit, its counters and gauges are metrics, its
 * readiness is a real scrape over the app's HTTP port; closed at shutdown. The app mounts
 * `/announce` and `/scrape` on its HTTP server (see apps/tracker).
 */
@Module({})
export class TrackerServerModule implements OnApplicationShutdown {
  constructor(private readonly tracker: TrackerServer) {}

  static forRoot(): DynamicModule {
    const log = new Logger('Tracker');
    return {
      module: TrackerServerModule,
      providers: [
        {
          provide: TrackerServer,
          inject: [ConfigService, ThrottleService, MetricsService, SWARM_TOKEN],
          useFactory: (
            config: ConfigService<TrackerServerConfig, true>,
            throttle: ThrottleService,
            metrics: MetricsService,
            token: string | undefined,
          ) => {
            const requests = metrics.counter('tracker_requests_total', 'Tracker announces and scrapes, by result.', ['action', 'result']);
            const counted = new Map<string, { inc(): void }>();
            const tracker = new TrackerServer({
              intervalSeconds: config.get('announceInterval', { infer: true }),
              peersCacheLength: config.get('peersCacheLength', { infer: true }),
              peersCacheTtlSeconds: config.get('peersCacheTtl', { infer: true }),
              idleSwarmSeconds: config.get('swarmIdleTimeout', { infer: true }),
              token,
              allowClient: (ip) => throttle.tryTake('announceRate', ip),
              // Label children cached: this runs once per announce.
              onResult: (action, result) => {
                const key = `${action}/${result}`;
                let child = counted.get(key);
                if (!child) counted.set(key, (child = requests.labels(action, result)));
                child.inc();
              },
              onWarning: (err, about) => log.debug({ msg: 'refused or malformed tracker request', reason: err.message, ...about }),
              // Per announce: only wired when debug lines are written (logLevel is fixed until restart).
              onAnnounce: Logger.isLevelEnabled('debug') ? (a) => log.debug({ msg: 'announce', ...a }) : undefined,
            });
            metrics.gauge('tracker_swarms', 'Swarms (info hashes) the tracker holds.', [], function collect() {
              this.set(tracker.stats().swarms);
            });
            metrics.gauge('tracker_peers', 'Peers over all swarms.', [], function collect() {
              this.set(tracker.stats().peers);
            });
            return tracker;
          },
        },
        {
          provide: TRACKER_READINESS,
          inject: [ReadinessRegistry, HealthIndicatorService, HttpAdapterHost, SWARM_TOKEN],
          useFactory: (registry: ReadinessRegistry, health: HealthIndicatorService, host: HttpAdapterHost, token: string | undefined) => {
            // "Ready" means the announce surface answers over HTTP, so it goes through the real server.
            const port = () => ((host.httpAdapter.getHttpServer() as Server).address() as AddressInfo).port;
            registry.register('announce', () => scrapeProbe(health, port(), token));
          },
        },
      ],
      exports: [TrackerServer],
    };
  }

  onApplicationShutdown(): Promise<void> {
    return this.tracker.close();
  }
}
