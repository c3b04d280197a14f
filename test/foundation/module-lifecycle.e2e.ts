import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrapApp, loadConfig } from '#ops';
import { registerRawBodyParser } from '#registry';
import { SwarmClient } from '#swarm';
import { AgentConfig } from '../../apps/agent/src/agent.config.js';
import { AgentModule } from '../../apps/agent/src/agent.module.js';
import { tempDir } from '../support/app-process.js';
import { startOriginRegistry, type OriginRegistry } from '../support/origin-registry.js';

const run = promisify(execFile);

/** TCP connections this process holds to 127.0.0.1:`port` (from ss, so nothing in-process can hide one). */
async function connectionsFromHereTo(port: number): Promise<number> {
  const { stdout } = await run('ss', ['-Htnp', 'state', 'established', 'dst', `127.0.0.1:${port}`]);
  return stdout.split('\n').filter((line) => line.includes(`pid=${process.pid},`)).length;
}

/** Resolves once `port` can be bound again on 127.0.0.1. */
function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createTcpServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/**
 * The agent's modules own what they open (issue #14 item 2): stopping the app closes the origin
 * client's kept-alive connections, the BitTorrent listener and the proxy ring's health checks.
 * In-process, so the test sees the very sockets and timers the app had.
 */
describe('module lifecycle (agent in-process)', () => {
  let origin: OriginRegistry;
  let proxyStub: Server;
  let healthChecks = 0;

  beforeAll(async () => {
    origin = await startOriginRegistry();
    // Stands in for a proxy as far as the ring is concerned: it only health-checks.
    proxyStub = createServer((req, res) => {
      if (req.url === '/healthz') healthChecks++;
      res.writeHead(200).end('{}');
    });
    await new Promise<void>((resolve) => proxyStub.listen(0, '127.0.0.1', resolve));
  });

  afterAll(async () => {
    await origin.stop();
    await new Promise((resolve) => proxyStub.close(resolve));
  });

  it('closing the app closes the origin connections, frees the BitTorrent port and stops the ring', async () => {
    const proxyPort = (proxyStub.address() as AddressInfo).port;
    const config = loadConfig(AgentConfig, {
      env: {
        P2P_HOST: '127.0.0.1',
        P2P_PORT: '0',
        P2P_P2P_PORT: '0',
        P2P_DATA_DIR: await tempDir('lifecycle-agent'),
        P2P_MIN_FREE_SPACE: '1MB',
        P2P_REGISTRY: origin.url,
        P2P_PROXIES: `http://127.0.0.1:${proxyPort}`,
        P2P_PROXY_REFRESH_INTERVAL: '1s',
        P2P_LOG_LEVEL: 'warn',
      },
    });
    // The test's own readiness polls of the origin may keep a connection too: count from there.
    const ownConnections = await connectionsFromHereTo(origin.port);
    const running = await bootstrapApp({ appName: 'agent', module: AgentModule.forRoot(config), config, configure: registerRawBodyParser });
    const p2pPort = await running.app.get(SwarmClient).ready();

    // A ping makes the origin client open a connection and keep it alive for the next request.
    const res = await fetch(`${running.url}/v2/`);
    expect(res.status).toBe(200);
    expect(await connectionsFromHereTo(origin.port)).toBeGreaterThan(ownConnections);
    expect(await canBind(p2pPort)).toBe(false);
    const checksBefore = healthChecks;
    for (let i = 0; i < 50 && healthChecks === checksBefore; i++) await new Promise((r) => setTimeout(r, 100));
    expect(healthChecks).toBeGreaterThan(checksBefore);

    await running.close();

    expect(await connectionsFromHereTo(origin.port)).toBe(ownConnections);
    expect(await canBind(p2pPort)).toBe(true);
    // Absence of further checks can only be shown by waiting: two refresh intervals.
    const checksAtClose = healthChecks;
    await new Promise((r) => setTimeout(r, 2500));
    expect(healthChecks).toBe(checksAtClose);
  });
});
