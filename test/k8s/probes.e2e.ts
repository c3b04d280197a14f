import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { startApp, tempDir, type AppProcess } from '../support/app-process.js';
import {
  APPS,
  documentedSecret,
  mountedConfig,
  portNumber,
  render,
  secretMount,
  workloadOf,
  type AppName,
  type K8sObject,
} from './k8s-manifests.js';

let objects: K8sObject[];
let work: string;
const running: AppProcess[] = [];

beforeAll(async () => {
  objects = await render('k8s');
  work = await tempDir('p2p-k8s-probes-');
});

afterAll(async () => {
  await Promise.all(running.map((p) => p.stop()));
  rmSync(work, { recursive: true, force: true });
});

/**
 * Boots the real CLI (`bin/p2p <app>`, compiled) with the ConfigMap's own file. Only what cannot
 * exist on a test machine is changed: loopback and an ephemeral port instead of the node address,
 * a temp data dir, and the Secret mount point moved into a temp dir. Peers and the origin point at
 * loopback ports nobody listens on, so nothing leaves the machine (no cluster DNS lookups).
 */
async function boot(app: AppName, tokens?: Record<string, string>): Promise<AppProcess> {
  const dir = join(work, `${app}-${running.length}`);
  const tokenDir = join(dir, 'tokens');
  mkdirSync(tokenDir, { recursive: true });
  for (const [key, value] of Object.entries(tokens ?? {})) writeFileSync(join(tokenDir, key), `${value}\n`);
  const config = parse(mountedConfig(objects, app).text) as Record<string, unknown>;
  const mount = secretMount(objects, app).mountPath;
  for (const key of ['adminTokenFile', 'swarmTokenFile']) config[key] = String(config[key]).replace(mount, tokenDir);
  Object.assign(config, { port: 0, host: '127.0.0.1', logFormat: 'json' });
  if ('dataDir' in config) Object.assign(config, { dataDir: join(dir, 'data'), minFreeSpace: '1MB' });
  if ('registry' in config) Object.assign(config, { registry: 'http://127.0.0.1:9', registries: [] });
  if ('trackers' in config) config.trackers = [];
  if ('proxies' in config) config.proxies = [];
  const proc = await startApp(app, config, { dir });
  running.push(proc);
  return proc;
}

describe('k8s probes hit routes the apps really serve', () => {
  it.each(APPS)('%s: startup, liveness and readiness probes, port and path', async (app) => {
    const pod = workloadOf(objects, app).spec.template.spec;
    const main = pod.containers[0];
    const config = parse(mountedConfig(objects, app).text) as { port: number };
    const probes = [main.startupProbe, main.livenessProbe, main.readinessProbe];
    for (const p of probes) expect(portNumber(main, p!.httpGet!.port)).toBe(config.port);

    const proc = await boot(app);
    for (const p of probes) {
      const res = await fetch(`${proc.url}${p!.httpGet!.path}`);
      // 503 is a served answer (not ready yet, with reasons); 404 would mean the probe is wrong.
      expect([200, 503], `${app} ${p!.httpGet!.path} → ${res.status}`).toContain(res.status);
      expect(res.headers.get('content-type')).toMatch(/json/);
    }
    // Liveness must not depend on readiness checks (a full disk must not restart the pod).
    expect(probes.map((p) => p?.httpGet?.path)).toEqual(['/healthz', '/healthz', '/readyz']);
    expect((await fetch(`${proc.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${proc.url}/definitely-not-a-route`)).status).toBe(404);
    // Without the optional Secret the app runs, with the admin API off.
    expect((await fetch(`${proc.url}/admin/rate`, { headers: { authorization: 'Bearer guess' } })).status).toBe(403);
    expect(proc.output()).toMatch(/admin API off/);
    await proc.stop();
  });

  it('the tracker serves the announce path the ConfigMaps point agents and proxies at', async () => {
    const announce = new URL((parse(mountedConfig(objects, 'agent').text) as { trackers: string[] }).trackers[0]).pathname;
    const proc = await boot('tracker');
    const res = await fetch(`${proc.url}${announce}`);
    expect(res.status, `${announce} → ${res.status}`).not.toBe(404);
    await proc.stop();
  });

  it('with the documented Secret the admin API is on, and the token never reaches the logs', async () => {
    const secret = documentedSecret();
    expect(secret.name).toBe(secretMount(objects, 'agent').secretName);
    expect(secret.keys.sort()).toEqual(['admin-token', 'swarm-token']);
    const admin = 'k8s-test-admin-0123456789abcdef';
    const proc = await boot('tracker', { 'admin-token': admin, 'swarm-token': 'k8s-test-swarm-fedcba9876543210' });
    expect((await fetch(`${proc.url}/admin/rate`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    const ok = await fetch(`${proc.url}/admin/rate`, { headers: { authorization: `Bearer ${admin}` } });
    expect(ok.status).toBe(200);
    await proc.stop();
    expect(proc.output()).toMatch(/admin API on/);
    expect(proc.output()).not.toContain(admin);
    expect(proc.output()).not.toContain('k8s-test-swarm');
  });
});
