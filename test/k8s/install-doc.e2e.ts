import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../support/app-process.js';
import { allContainers, documentedSecret, find, installDoc, render, secretMount, workloads, type K8sObject, type Workload } from './k8s-manifests.js';

let base: K8sObject[];
let uninstall: K8sObject[];
let doc: string;

beforeAll(async () => {
  base = await render('k8s/base');
  uninstall = await render('k8s/overlays/containerd-mirror/uninstall');
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
      for (const port of w.spec.template.spec.containers[0].ports ?? []) expect(table, `${w.metadata.name} ${port.containerPort}`).toContain(`| ${port.containerPort}/TCP |`);
    }
  });

  it('creates the Secret the pods mount, with the keys the configs read', () => {
    const secret = documentedSecret();
    expect(secret.name).toBe(secretMount(base, 'agent').secretName);
    expect(secret.keys.sort()).toEqual(['admin-token', 'swarm-token']);
    expect(doc).toContain(`delete secret ${secret.name}`);
  });

  it('points only at kustomization folders and objects that exist', async () => {
    const dirs = [...doc.matchAll(/kubectl (?:apply|delete) -k (k8s\/[\w\/.-]*)/g)].map((m) => m[1].replace(/\/$/, ''));
    expect(dirs.length).toBeGreaterThan(2);
    for (const dir of dirs) expect(existsSync(join(ROOT, dir, 'kustomization.yaml')), dir).toBe(true);
    const all = [...base, ...uninstall];
    for (const [, kind, name] of doc.matchAll(/rollout (?:status|restart) (daemonset|deployment)\/([\w-]+)/g)) {
      expect(all.some((o) => o.kind.toLowerCase() === kind && o.metadata.name === name), `${kind}/${name}`).toBe(true);
    }
    for (const [, name] of doc.matchAll(/edit configmap ([\w-]+)/g)) find(base, 'ConfigMap', name);
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
