import { bootstrapApp, exitOnSignals, type AppEntry, type RunningApp } from '#ops';
import { TrackerConfig } from './tracker.config.js';
import { TrackerModule } from './tracker.module.js';

/** Starts the tracker and returns it (tests stop it with `close()`). */
export function startTracker(config: TrackerConfig): Promise<RunningApp> {
  return bootstrapApp({ appName: 'tracker', module: TrackerModule.forRoot(config), config });
}

export const trackerEntry: AppEntry<TrackerConfig> = {
  summary: 'private BitTorrent tracker for the cluster',
  configClass: TrackerConfig,
  devDefaults: {},
  async start(config) {
    const running = await startTracker(config);
    exitOnSignals(running, config.shutdownGraceSeconds);
  },
};
