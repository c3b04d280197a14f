import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentConfig } from '../../apps/agent/src/agent.config.js';
import { ProxyConfig } from '../../apps/proxy/src/proxy.config.js';
import { TrackerConfig } from '../../apps/tracker/src/tracker.config.js';
import { ConfigError, loadConfig, type BaseAppConfig } from '#ops';
import { tempDir } from '../support/app-process.js';
import {
  APPS,
  find,
  INSTALLS,
  installDoc,
  K8S_DIR,
  mountedConfig,
  NAMESPACE,
  portNumber,
  renderInstalls,
  secretMount,
  workloadOf,
  type AppName,
  type K8sObject,
} from './k8s-manifests.js';

const CLASSES = { agent: AgentConfig, proxy: ProxyConfig, tracker: TrackerConfig } as const;
type Loaded = { agent: AgentConfig; proxy: ProxyConfig; tracker: TrackerConfig };

const DIRS = Object.keys(INSTALLS);
let rendered: Map<string, K8sObject[]>;
let dir: string;

/** The app's own loader and validation on the ConfigMap text, exactly as `p2p <app> --config` runs it. */
function load<A extends AppName>(app: A, text: string): Loaded[A] {
  const file = join(dir, `${app}-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, text);
  try {
    return loadConfig(CLASSES[app] as new () => Loaded[A], { file, env: {} });
  } finally {
    rmSync(file, { force: true });
  }
}

beforeAll(async () => {
  dir = await tempDir('p2p-k8s-config-');
  rendered = await renderInstalls();
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('k8s ConfigMaps against the apps’ own config validation', () => {
  it('covers the install with and without each component', () => {
    expect(DIRS).toEqual(['k8s', 'k8s + containerd-mirror', 'k8s + containerd-mirror-off', 'k8s + proxy-tls']);
  });

  describe.each(DIRS)('%s', (d) => {
    const objects = () => rendered.get(d)!;

    it.each(APPS)('%s: the mounted config file passes the app’s validation (no unknown key, no bad value)', (app) => {
      const { text, configMap } = mountedConfig(objects(), app);
      expect(configMap).toBe(`p2p-${app}`);
      expect(() => load(app, text)).not.toThrow();
    });

    it.each(APPS)('%s: ports, data dir and token files agree with the manifest', (app) => {
      const objects_ = objects();
      const config: BaseAppConfig & { p2pPort?: number; dataDir?: string } = load(app, mountedConfig(objects_, app).text);
      const pod = workloadOf(objects_, app).spec.template.spec;
      const main = pod.containers[0];
      expect(portNumber(main, 'http')).toBe(config.port);
      expect(config.host).toBe('0.0.0.0'); // probes come from kubelet over the node address
      // The app drains in-flight pulls on SIGTERM; kubelet must not SIGKILL it before it is done.
      expect(config.shutdownGraceSeconds).toBeLessThan(pod.terminationGracePeriodSeconds ?? 30);
      if (config.p2pPort !== undefined) expect(portNumber(main, 'bittorrent')).toBe(config.p2pPort);
      if (config.dataDir !== undefined) {
        const mount = main.volumeMounts!.find((m) => m.mountPath === config.dataDir);
        expect(pod.volumes!.find((v) => v.name === mount?.name)?.hostPath?.path, `${app} dataDir ${config.dataDir}`).toBe(config.dataDir);
      }
      const secret = secretMount(objects_, app);
      expect(secret).toMatchObject({ secretName: 'p2p-tokens', optional: true });
      expect(config.adminTokenFile).toBe(`${secret.mountPath}/admin-token`);
      expect(config.swarmTokenFile).toBe(`${secret.mountPath}/swarm-token`);
    });

    it('agents and proxies find the trackers and the proxy ring through the headless Services', () => {
      const agent = load('agent', mountedConfig(objects(), 'agent').text);
      const proxy = load('proxy', mountedConfig(objects(), 'proxy').text);
      const tracker = load('tracker', mountedConfig(objects(), 'tracker').text);
      const serviceUrl = (name: string, port: number, path = '') => `http://${name}.${NAMESPACE}.svc:${port}${path}`;
      const trackerSvc = find<K8sObject & { spec: { ports: { port: number }[] } }>(objects(), 'Service', 'p2p-tracker');
      const proxySvc = find<K8sObject & { spec: { ports: { name: string; port: number }[] } }>(objects(), 'Service', 'p2p-proxy');
      expect(trackerSvc.spec.ports.map((p) => p.port)).toContain(tracker.port);
      expect(proxySvc.spec.ports.find((p) => p.name === 'http')?.port).toBe(proxy.port);
      expect(agent.trackers).toEqual([serviceUrl('p2p-tracker', tracker.port, '/announce')]);
      expect(proxy.trackers).toEqual(agent.trackers);
      expect(agent.proxies).toEqual([serviceUrl('p2p-proxy', proxy.port)]);
      // Every origin the agents accelerate must be one the proxies fetch from.
      const origins = (c: AgentConfig | ProxyConfig) => new Set([c.registry, ...c.registries].map((u) => new URL(u).origin));
      for (const origin of origins(agent)) expect(origins(proxy).has(origin), `proxy lacks ${origin}`).toBe(true);
      expect(agent.downloadRate).toBeGreaterThan(0);
      expect(agent.uploadRate).toBeGreaterThan(0);
    });
  });

  it('rates follow the product’s guidance: within 100 MB/s for local disks, a documented 20 MB/s for cloud disks', () => {
    const agent = load('agent', mountedConfig(rendered.get('k8s')!, 'agent').text);
    // The node's disk is the bound: up to 100 MB/s on local disks.
    expect(agent.downloadRate).toBeGreaterThan(0);
    expect(agent.downloadRate).toBeLessThanOrEqual(100e6);
    expect(agent.uploadRate).toBeLessThanOrEqual(agent.downloadRate);
    // The cloud-disk setting, as config/agent.yaml spells it out in its comments, is a valid config.
    const file = readFileSync(join(K8S_DIR, 'config/agent.yaml'), 'utf8');
    const cloud = [...file.matchAll(/^#\s+(downloadRate|uploadRate): (\S+)$/gm)].map(([, key, value]) => [key, value] as const);
    expect(cloud.map(([k]) => k)).toEqual(['downloadRate', 'uploadRate']);
    const edited = cloud.reduce((t, [key, value]) => t.replace(new RegExp(`^${key}: .*$`, 'm'), `${key}: ${value}`), file);
    const onCloud = load('agent', edited);
    expect(onCloud.downloadRate).toBe(20e6);
    expect(onCloud.uploadRate).toBeLessThanOrEqual(onCloud.downloadRate);
    // docs/install.md explains the choice with the same figures.
    const doc = installDoc();
    for (const figure of [/100 MB\/s/, /20 MB\/s/, /downloadRate: 20MB/]) expect(doc).toMatch(figure);
  });

  it('a typo or a bad value in a ConfigMap fails the same validation', () => {
    const { text } = mountedConfig(rendered.get('k8s')!, 'agent');
    expect(() => load('agent', text.replace(/^downloadRate:/m, 'downloadRat:'))).toThrow(
      /downloadRat: unknown key \(did you mean downloadRate\?\)/,
    );
    expect(() => load('agent', text.replace(/^uploadRate: .*$/m, 'uploadRate: fast'))).toThrow(ConfigError);
    expect(() => load('tracker', mountedConfig(rendered.get('k8s')!, 'tracker').text.replace('port: 6969', 'port: 70000'))).toThrow(
      /port must not be greater than 65535/,
    );
  });
});
