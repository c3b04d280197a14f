import { describe, expect, it } from 'vitest';
import { AgentConfig } from '../../apps/agent/src/agent.config.js';
import { ProxyConfig } from '../../apps/proxy/src/proxy.config.js';
import { loadConfig } from '#ops';
import { mountedConfig, renderInstall, workloadOf, type K8sObject, type Workload } from './k8s-manifests.js';

/** The env a container sets, as the app reads it (`P2P_*` overrides win over the config file). */
function envOf(workload: Workload, container: string): Record<string, string> {
  const c = workload.spec.template.spec.containers.find((x) => x.name === container)!;
  return Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? '']));
}

/** issue #12 item 9 in the install: components/proxy-tls mounts the Secret and points both sides at it. */
describe('k8s: the proxy-tls component (offline render)', () => {
  let objects: K8sObject[];

  it('renders with the component uncommented', async () => {
    objects = await renderInstall({ components: ['proxy-tls'] });
    expect(objects.length).toBeGreaterThan(0);
  });

  it('proxy: certificate and key from the Secret p2p-proxy-tls, HTTPS probes, the app accepts the settings', () => {
    const proxy = workloadOf(objects, 'proxy');
    const pod = proxy.spec.template.spec;
    const container = pod.containers.find((c) => c.name === 'proxy')!;
    const env = envOf(proxy, 'proxy');
    expect(env).toMatchObject({ P2P_TLS_CERT_FILE: '/etc/p2p/tls/tls.crt', P2P_TLS_KEY_FILE: '/etc/p2p/tls/tls.key' });
    expect(container.volumeMounts).toContainEqual({ name: 'proxy-tls', mountPath: '/etc/p2p/tls', readOnly: true });
    expect(pod.volumes?.find((v) => v.name === 'proxy-tls')?.secret?.secretName).toBe('p2p-proxy-tls');
    for (const probe of [container.startupProbe, container.livenessProbe, container.readinessProbe]) {
      expect(probe?.httpGet).toMatchObject({ scheme: 'HTTPS', path: expect.stringMatching(/^\/(healthz|readyz)$/), port: 'http' });
    }
    const config = loadConfig(ProxyConfig, { fileText: mountedConfig(objects, 'proxy').text, file: '/etc/p2p/config/proxy.yaml', env });
    expect([config.tlsCertFile, config.tlsKeyFile]).toEqual(['/etc/p2p/tls/tls.crt', '/etc/p2p/tls/tls.key']);
  });

  it('agent: https:// proxies verified against the certificate alone (never the key)', () => {
    const agent = workloadOf(objects, 'agent');
    const pod = agent.spec.template.spec;
    const env = envOf(agent, 'agent');
    const volume = pod.volumes?.find((v) => v.name === 'proxy-ca');
    expect(volume?.secret).toMatchObject({ secretName: 'p2p-proxy-tls', items: [{ key: 'tls.crt', path: 'ca.crt' }] });
    const config = loadConfig(AgentConfig, { fileText: mountedConfig(objects, 'agent').text, file: '/etc/p2p/config/agent.yaml', env });
    expect(config.proxies).toEqual(['https://p2p-proxy.kube-system.svc:5005']);
    expect(config.proxyCaFile).toBe('/etc/p2p/proxy-ca/ca.crt');
  });

  it('is off in the install as shipped: plain HTTP, no Secret needed', async () => {
    const shipped = await renderInstall();
    expect(envOf(workloadOf(shipped, 'proxy'), 'proxy')).not.toHaveProperty('P2P_TLS_CERT_FILE');
    expect(workloadOf(shipped, 'agent').spec.template.spec.volumes?.some((v) => v.name === 'proxy-ca')).toBe(false);
  });
});
