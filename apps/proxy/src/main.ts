import { bootstrapApp, exitOnSignals, type AppEntry, type RunningApp } from '#ops';
import { ProxyConfig } from './proxy.config.js';
import { ProxyModule } from './proxy.module.js';

/** Starts the proxy and returns it (tests stop it with `close()`). */
export function startProxy(config: ProxyConfig): Promise<RunningApp> {
  return bootstrapApp({ appName: 'proxy', module: ProxyModule.forRoot(config), config });
}

export const proxyEntry: AppEntry<ProxyConfig> = {
  summary: 'original seed: pulls each blob from the origin once, makes its torrent and seeds it',
  configClass: ProxyConfig,
  devDefaults: { dataDir: '.p2p-data/proxy', minFreeSpace: '100MB', trackers: ['http://127.0.0.1:6969/announce'] },
  async start(config) {
    const running = await startProxy(config);
    exitOnSignals(running, config.shutdownGraceSeconds);
  },
};
