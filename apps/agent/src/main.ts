import { bootstrapApp, exitOnSignals, type AppEntry, type RunningApp } from '#ops';
import { registerRawBodyParser } from '#registry';
import { AgentConfig } from './agent.config.js';
import { AgentModule } from './agent.module.js';

/** Starts the agent and returns it (tests stop it with `close()`). */
function startAgent(config: AgentConfig): Promise<RunningApp> {
  return bootstrapApp({ appName: 'agent', module: AgentModule.forRoot(config), config, configure: registerRawBodyParser });
}

/** @public bin/p2p loads it from dist (outside knip's view). */
export const agentEntry: AppEntry<AgentConfig> = {
  summary: 'node-local registry mirror (localhost:5004) that fetches layers from the swarm',
  configClass: AgentConfig,
  devDefaults: {
    dataDir: '.p2p-data/agent',
    minFreeSpace: '100MB',
    trackers: ['http://127.0.0.1:6969/announce'],
    proxies: ['http://127.0.0.1:5005'],
  },
  async start(config) {
    const running = await startAgent(config);
    exitOnSignals(running, config.shutdownGraceSeconds);
  },
};
