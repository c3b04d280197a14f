import { Logger } from '@nestjs/common';
import { bootstrapApp, exitOnSignals, readConfiguredFile, type AppEntry, type RunningApp } from '#ops';
import { ProxyConfig } from './proxy.config.js';
import { ProxyModule } from './proxy.module.js';

/** Starts the proxy and returns it (tests stop it with `close()`). */
async function startProxy(config: ProxyConfig): Promise<RunningApp> {
  // Both files or neither (the config check); read once at start: a renewed certificate takes a restart.
  const https = config.tlsCertFile
    ? { cert: readConfiguredFile('tlsCertFile', config.tlsCertFile), key: readConfiguredFile('tlsKeyFile', config.tlsKeyFile) }
    : undefined;
  const running = await bootstrapApp({ appName: 'proxy', module: ProxyModule.forRoot(config), config, https });
  if (!https) {
    new Logger('Tls').warn({
      msg: "TLS is off (no tlsCertFile/tlsKeyFile): agents send clients' registry credentials and the swarm token to this proxy in clear; see README, TLS between agents and proxies",
      tls: false,
    });
  }
  return running;
}

/** @public bin/p2p loads it from dist (outside knip's view). */
export const proxyEntry: AppEntry<ProxyConfig> = {
  summary: 'original seed: pulls each blob from the origin once, makes its torrent and seeds it',
  configClass: ProxyConfig,
  devDefaults: { dataDir: '.p2p-data/proxy', minFreeSpace: '100MB', trackers: ['http://127.0.0.1:6969/announce'] },
  async start(config) {
    const running = await startProxy(config);
    exitOnSignals(running, config.shutdownGraceSeconds);
  },
};
