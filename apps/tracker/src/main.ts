import { bootstrapApp, exitOnSignals, type AppEntry, type RunningApp } from '#ops';
import { TrackerServer } from '#tracker';
import { TrackerConfig } from './tracker.config.js';
import { TrackerModule } from './tracker.module.js';

/** Starts the tracker and returns it (tests stop it with `close()`). */
function startTracker(config: TrackerConfig): Promise<RunningApp> {
  return bootstrapApp({
    appName: 'tracker',
    module: TrackerModule.forRoot(config),
    config,
    // The BitTorrent protocol endpoints skip the framework: announces are the tracker's hot path
    // (bursts of thousands per second when a rollout starts) and carry their own token check and
    // `p2p_tracker_requests_total`.
    rawRoutes: (app) => {
      const tracker = app.get(TrackerServer);
      return {
        '/announce': (req, res) => tracker.handle('announce', req, res),
        '/scrape': (req, res) => tracker.handle('scrape', req, res),
      };
    },
  });
}

/** @public bin/p2p loads it from dist (outside knip's view). */
export const trackerEntry: AppEntry<TrackerConfig> = {
  summary: 'private BitTorrent tracker for the cluster',
  configClass: TrackerConfig,
  devDefaults: {},
  async start(config) {
    const running = await startTracker(config);
    exitOnSignals(running, config.shutdownGraceSeconds);
  },
};
