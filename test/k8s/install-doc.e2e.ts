import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../support/app-process.js';
import {
  allContainers,
  documentedSecret,
  find,
  installDoc,
  K8S_DIR,
  renderInstall,
  secretMount,
  workloadOf,
  workloads,
  type K8sObject,
  type Workload,
} from './k8s-manifests.js';

let base: K8sObject[];
let mirror: K8sObject[];
let doc: string;

beforeAll(async () => {
  base = await renderInstall();
  mirror = await renderInstall({ components: ['containerd-mirror'] });
  doc = installDoc();
});

/** docs/install.md is the user's first contact: its commands must name what the manifests really use. */
describe('docs/install.md matches the manifests', () => {
  it('labels nodes exactly as the proxy and tracker node selectors expect', () => {
    for (const name of ['p2p-proxy', 'p2p-tracker']) {
      const selector = find<Workload>(base, 'Deployment', name).spec.template.spec.nodeSelector!;
      for (const [key, value] of Object.entries(selector)) {
        expect(doc).toMatch(new RegExp(`kubectl label nodes \\S+ ${key}=${value}\\s`));
        expect(doc).toContain(`${key}-`); // uninstall removes the label
      }
    }
  });

  it('lists every node port the workloads open', () => {
    const table = doc.slice(doc.indexOf('## 3.'), doc.indexOf('## 4.'));
    for (const w of workloads(base)) {
      for (const port of w.spec.template.spec.containers[0].ports ?? [])
        expect(table, `${w.metadata.name} ${port.containerPort}`).toContain(`| ${port.containerPort}/TCP |`);
    }
  });

  it('creates the Secret the pods mount, with the keys the configs read', () => {
    const secret = documentedSecret();
    expect(secret.name).toBe(secretMount(base, 'agent').secretName);
    expect(secret.keys.sort()).toEqual(['admin-token', 'swarm-token']);
    expect(doc).toContain(`delete secret ${secret.name}`);
  });

  it('points only at kustomization folders, components and objects that exist', () => {
    const dirs = [...doc.matchAll(/kubectl (?:apply|delete) -k ([\w/.-]+)/g)].map((m) => m[1].replace(/\/$/, ''));
    expect(dirs.length).toBeGreaterThan(2);
    // One install: every apply and delete is of k8s/ itself (monitoring is applied on its own).
    expect(new Set(dirs.filter((d) => d !== 'k8s/monitoring'))).toEqual(new Set(['k8s']));
    for (const dir of dirs) expect(existsSync(join(ROOT, dir, 'kustomization.yaml')), dir).toBe(true);
    const components = [...doc.matchAll(/components\/([\w-]+)/g)].map((m) => m[1]);
    expect(new Set(components)).toEqual(new Set(['containerd-mirror', 'containerd-mirror-off', 'proxy-tls']));
    for (const c of components) expect(existsSync(join(K8S_DIR, 'components', c, 'kustomization.yaml')), c).toBe(true);
    for (const [, path] of doc.matchAll(/`(k8s\/[\w/.-]+)`/g)) expect(existsSync(join(ROOT, path)), path).toBe(true);
    const all = [...base, ...mirror];
    for (const [, kind, name] of doc.matchAll(/rollout (?:status|restart) (daemonset|deployment)\/([\w-]+)/g)) {
      expect(
        all.some((o) => o.kind.toLowerCase() === kind && o.metadata.name === name),
        `${kind}/${name}`,
      ).toBe(true);
    }
    const edits = [...doc.matchAll(/edit configmap ([\w-]+)/g)].map((m) => m[1]);
    expect(edits).toContain('p2p-agent');
    for (const name of edits) find(base, 'ConfigMap', name);
  });

  it('builds and pushes the image the install renders', () => {
    const built = /docker build -t (\S+) \./.exec(doc)?.[1];
    expect(doc).toContain(`docker push ${built}`);
    for (const w of workloads(base)) for (const c of allContainers(w.spec.template.spec)) expect(c.image).toBe(built);
  });

  it('creates the image pull Secret the pods list, and the taint the proxy and tracker tolerate', () => {
    const pull = /kubectl -n kube-system create secret docker-registry (\S+)/.exec(doc)?.[1];
    for (const w of workloads(base))
      expect(
        w.spec.template.spec.imagePullSecrets?.map((s) => s.name),
        w.metadata.name,
      ).toEqual([pull]);
    expect(doc).toMatch(new RegExp(`delete secret .*\\b${pull}\\b`));
    const [key, value, effect] = /kubectl taint nodes \S+ ([\w-]+)=([\w-]+):(\w+)\s/.exec(doc)!.slice(1);
    for (const app of ['proxy', 'tracker'] as const) {
      expect(workloadOf(base, app).spec.template.spec.tolerations).toContainEqual({ key, operator: 'Equal', value, effect });
    }
    expect(doc).toContain(`${key}=${value}:${effect}-`); // uninstall removes it
  });

  it('warns that localhost:5004 workloads cannot pull without the agent, with the upgrade, roll-back and uninstall steps', () => {
    const upgrade = doc.slice(doc.indexOf('Upgrade'), doc.indexOf('## 12.'));
    expect(upgrade).toMatch(/newTag/);
    expect(upgrade).toMatch(/rollout undo daemonset\/p2p-agent/);
    expect(upgrade).toContain('maxUnavailable: 10%');
    const uninstall = doc.slice(doc.indexOf('## 12. Uninstall'));
    expect(uninstall).toMatch(/localhost:5004/);
    expect(uninstall).toMatch(/containerd-mirror-off/);
    const agent = find<Workload & { spec: { updateStrategy: { rollingUpdate: { maxUnavailable: string } } } }>(
      base,
      'DaemonSet',
      'p2p-agent',
    );
    expect(agent.spec.updateStrategy.rollingUpdate.maxUnavailable).toBe('10%');
  });

  it('documents every securityContext exception the manifests take', () => {
    const exceptions = doc.slice(doc.indexOf('## Security exceptions'));
    for (const w of workloads(base)) {
      const pod = w.spec.template.spec;
      if (pod.hostNetwork) expect(exceptions).toMatch(new RegExp(`hostNetwork\`? \\| ${w.metadata.name.replace('p2p-', '')}`));
      for (const v of pod.volumes ?? []) if (v.hostPath) expect(exceptions).toContain(v.hostPath.path);
      for (const c of allContainers(pod)) if (c.securityContext?.runAsUser === 0) expect(exceptions).toContain(c.name);
    }
    expect(exceptions).toContain('containerd-hosts');
    expect(doc).toContain('config_path = "/etc/containerd/certs.d"');
  });
});
