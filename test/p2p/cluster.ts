import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { startApp, tempDir, type AppProcess } from '../support/app-process.js';
import { OciLayout, pushImage } from '../support/oci-image.js';
import { startOriginRegistry, type OriginRegistry } from '../support/origin-registry.js';

export const USER = { username: 'puller', password: 'p2p-secret' };
export const CREDS = `${USER.username}:${USER.password}`;
export const ADMIN = 'p2p-admin-token';
export const SWARM = 'swarm-secret-for-tests';

/** A loopback cluster of real processes: origin (htpasswd) + tracker + proxies + agents. */
export interface LoopbackCluster {
  dir: string;
  origin: OriginRegistry;
  tracker: AppProcess;
  proxies: AppProcess[];
  agents: AppProcess[];
  stop(): Promise<void>;
}

export async function startLoopbackCluster(options: {
  proxies: number;
  agents: number;
  agentConfig?: Record<string, unknown>;
  proxyConfig?: Record<string, unknown>;
  trackerConfig?: Record<string, unknown>;
}): Promise<LoopbackCluster> {
  const dir = await tempDir('p2p-cluster-');
  await writeFile(join(dir, 'swarm-token'), `${SWARM}\n`);
  await writeFile(join(dir, 'admin-token'), `${ADMIN}\n`);
  const origin = await startOriginRegistry({ auth: USER });
  const tokens = { swarmTokenFile: join(dir, 'swarm-token'), adminTokenFile: join(dir, 'admin-token') };
  const started: AppProcess[] = [];
  try {
    const tracker = await startApp('tracker', { ...tokens, announceRate: 0, ...options.trackerConfig });
    started.push(tracker);
    const trackers = [`${tracker.url}/announce`];
    const node = { ...tokens, minFreeSpace: '10MB', registry: origin.url, trackers };
    const proxies: AppProcess[] = [];
    for (let n = 1; n <= options.proxies; n++) {
      const p = await startApp('proxy', { ...node, dataDir: join(dir, `proxy${n}`), ...options.proxyConfig });
      proxies.push(p);
      started.push(p);
    }
    const agents: AppProcess[] = [];
    for (let n = 1; n <= options.agents; n++) {
      const a = await startApp('agent', {
        ...node,
        dataDir: join(dir, `agent${n}`),
        proxies: proxies.map((p) => p.url),
        p2pMinSize: '1MB',
        ...options.agentConfig,
      });
      agents.push(a);
      started.push(a);
    }
    return {
      dir,
      origin,
      tracker,
      proxies,
      agents,
      async stop() {
        await Promise.all(started.map((p) => p.stop()));
        await origin.stop();
      },
    };
  } catch (err) {
    await Promise.all(started.map((p) => p.stop()));
    await origin.stop();
    throw err;
  }
}

/** Sum of a Prometheus metric's samples whose labels include `labels`. */
export function sample(text: string, name: string, labels = ''): number {
  return text
    .split('\n')
    .filter((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(labels))
    .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
}

export async function metrics(app: AppProcess): Promise<string> {
  const res = await request(`${app.url}/metrics`);
  return res.body.text();
}

export async function admin(
  app: AppProcess,
  method: 'GET' | 'PATCH',
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const res = await request(`${app.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: text ? JSON.parse(text) : undefined };
}

/** Polls `check` every 50 ms until it is true or `timeoutMs` passes; returns whether it became true. */
export async function until(check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return check();
}

/** Pushes a fresh single-layer image `<repo>:v1` (random bytes: a digest no cache has seen) and returns its layer. */
export async function pushLayer(cluster: LoopbackCluster, repo: string, size: number) {
  const layout = new OciLayout(join(cluster.dir, `layout-${repo.replace(/\//g, '-')}`));
  const image = await layout.addImage('v1', [size]);
  await pushImage(layout.dir, 'v1', { host: cluster.origin.host, repo, creds: CREDS });
  return image.layers[0];
}

/** Bytes the agent has received from BitTorrent peers and proxies (per 16 KiB block) and relayed from a proxy. */
export async function swarmBytes(cluster: LoopbackCluster, i = 0): Promise<number> {
  const text = await metrics(cluster.agents[i]);
  return ['peer', 'proxy', 'relay'].reduce((n, source) => n + sample(text, 'p2p_blob_bytes_received_total', `source="${source}"`), 0);
}
