import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  allContainers,
  APPS,
  find,
  K8S_DIR,
  mountedConfig,
  render,
  renderInstall,
  workloadOf,
  workloads,
  type AppName,
  type K8sObject,
  type Workload,
} from './k8s-manifests.js';

/** k8s/kustomization.yaml as the operator reads it. */
interface Kustomization {
  images: { name: string; newName?: string; newTag?: string; digest?: string }[];
  replicas: { name: string; count: number }[];
  components?: string[] | null;
  resources: string[];
  configMapGenerator: {
    name: string;
    files: string[];
    options?: { disableNameSuffixHash?: boolean; annotations?: Record<string, string> };
  }[];
}

const HASH_ANNOTATION = 'p2p-image-accelerator/config-hash';
const kustomizationText = () => readFileSync(join(K8S_DIR, 'kustomization.yaml'), 'utf8');
const kustomization = () => parse(kustomizationText()) as Kustomization;
const template = (objects: K8sObject[], app: AppName) => workloadOf(objects, app).spec.template;
const configHash = (objects: K8sObject[], app: AppName) => template(objects, app).metadata?.annotations?.[HASH_ANNOTATION];

let shipped: K8sObject[];

beforeAll(async () => {
  shipped = await renderInstall();
});

describe('`kubectl apply -k k8s/` is the install, set in one place', () => {
  it('k8s/kustomization.yaml carries the image (one entry, a registry-qualified name), the counts and the components; config/ the app files', () => {
    const k = kustomization();
    expect(k.images).toHaveLength(1);
    const [image] = k.images;
    expect(image.name).toBe('p2p-image-accelerator');
    // Fully qualified (registry host first): never resolved against Docker Hub's library/.
    expect(image.newName).toMatch(/^[a-z0-9-]+(\.[a-z0-9-]+)+(:\d+)?\/[a-z0-9._/-]+$/);
    expect(image.newTag ?? image.digest).toBeTruthy();
    expect(k.replicas.map((r) => r.name).sort()).toEqual(['p2p-proxy', 'p2p-tracker']);
    expect(k.components ?? []).toEqual([]); // shipped with both mirror lines commented out
    expect(kustomizationText()).toMatch(/^ {2}# - components\/containerd-mirror$/m);
    expect(kustomizationText()).toMatch(/^ {2}# - components\/containerd-mirror-off$/m);
    for (const app of APPS) {
      const files = k.configMapGenerator.filter((g) => g.files.includes(`${app}.yaml=config/${app}.yaml`)).map((g) => g.name);
      expect(files.sort(), app).toEqual([`p2p-${app}`, `p2p-${app}-config-hash`]);
    }
  });

  it('renders the image the kustomization names in every container', () => {
    const { newName, newTag } = kustomization().images[0];
    for (const w of workloads(shipped))
      for (const c of allContainers(w.spec.template.spec)) expect(c.image, `${w.metadata.name}/${c.name}`).toBe(`${newName}:${newTag}`);
  });

  it('the image entry sets every container, mirror mode’s init container included', async () => {
    const { newName } = kustomization().images[0];
    const objects = await renderInstall({
      components: ['containerd-mirror'],
      files: {
        'kustomization.yaml': (t) =>
          t.replace(`newName: ${newName}`, 'newName: registry.internal:5000/ops/p2p').replace(/newTag: "[^"]+"/, 'newTag: "0.2.0"'),
      },
    });
    const images = workloads(objects).flatMap((w) => allContainers(w.spec.template.spec).map((c) => c.image));
    expect(images.length).toBeGreaterThanOrEqual(6);
    expect(new Set(images)).toEqual(new Set(['registry.internal:5000/ops/p2p:0.2.0']));
  });

  it('mirror mode added by an overlay on top of k8s/ still runs the install’s image (the component copies it)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'p2p-k8s-overlay-'));
    try {
      cpSync(K8S_DIR, join(dir, 'k8s'), { recursive: true });
      mkdirSync(join(dir, 'overlay'));
      writeFileSync(join(dir, 'overlay/kustomization.yaml'), 'resources: [../k8s]\ncomponents: [../k8s/components/containerd-mirror]\n');
      const pod = workloadOf(await render(join(dir, 'overlay')), 'agent').spec.template.spec;
      const { newName, newTag } = kustomization().images[0];
      expect(pod.initContainers!.map((c) => [c.name, c.image])).toContainEqual(['containerd-hosts', `${newName}:${newTag}`]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('replicas set the proxy and tracker counts', async () => {
    const objects = await renderInstall({
      files: {
        'kustomization.yaml': (t) =>
          t.replace(/(name: p2p-proxy\n\s+count:) \d+/, '$1 3').replace(/(name: p2p-tracker\n\s+count:) \d+/, '$1 2'),
      },
    });
    const count = (o: K8sObject[], name: string) => find<Workload & { spec: { replicas?: number } }>(o, 'Deployment', name).spec.replicas;
    expect([count(shipped, 'p2p-proxy'), count(shipped, 'p2p-tracker')]).toEqual([1, 1]);
    expect([count(objects, 'p2p-proxy'), count(objects, 'p2p-tracker')]).toEqual([3, 2]);
  });

  it('registries and rates set in config/ are what the apps read', async () => {
    const objects = await renderInstall({
      files: {
        'config/agent.yaml': (t) =>
          t.replace('registries: []', 'registries:\n  - https://registry.internal').replace(/^downloadRate: .*$/m, 'downloadRate: 20MB'),
        'config/proxy.yaml': (t) => t.replace('registries: []', 'registries:\n  - https://registry.internal'),
      },
    });
    const agent = parse(mountedConfig(objects, 'agent').text) as { registries: string[]; downloadRate: string };
    const proxy = parse(mountedConfig(objects, 'proxy').text) as { registries: string[] };
    expect([agent.registries, agent.downloadRate, proxy.registries]).toEqual([
      ['https://registry.internal'],
      '20MB',
      ['https://registry.internal'],
    ]);
  });
});

describe('a config change rolls the pods; no change leaves them alone', () => {
  it('each pod template carries its config file’s hash, and nothing of the hash ConfigMaps reaches the cluster', () => {
    for (const app of APPS) expect(configHash(shipped, app), app).toMatch(new RegExp(`^p2p-${app}-config-hash-[a-z0-9]{10}$`));
    expect(shipped.filter((o) => o.metadata.name.includes('config-hash')).map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([]);
    // The mounted ConfigMaps keep stable names: `kubectl edit configmap p2p-agent` is the live edit.
    for (const app of APPS) expect(mountedConfig(shipped, app).configMap).toBe(`p2p-${app}`);
  });

  it('the same files render the same pod templates', async () => {
    expect(await renderInstall()).toEqual(shipped);
  });

  it.each<[AppName, string, (t: string) => string]>([
    ['agent', 'config/agent.yaml', (t) => t.replace(/^downloadRate: .*$/m, 'downloadRate: 20MB')],
    ['proxy', 'config/proxy.yaml', (t) => t.replace(/^originRate: .*$/m, 'originRate: 200MB')],
    ['tracker', 'config/tracker.yaml', (t) => t.replace(/^announceRate: .*$/m, 'announceRate: 10')],
  ])('one changed key in the %s file changes that pod template (its hash) and no other', async (app, file, edit) => {
    expect(edit(readFileSync(join(K8S_DIR, file), 'utf8'))).not.toBe(readFileSync(join(K8S_DIR, file), 'utf8'));
    const changed = await renderInstall({ files: { [file]: edit } });
    expect(configHash(changed, app)).not.toBe(configHash(shipped, app));
    expect(configHash(changed, app)).toMatch(new RegExp(`^p2p-${app}-config-hash-`));
    for (const other of APPS.filter((a) => a !== app)) expect(template(changed, other), other).toEqual(template(shipped, other));
    // Only the annotation differs in the changed template: the rest (mounts, image) stays.
    const strip = (o: K8sObject[]) => {
      const t = structuredClone(template(o, app));
      const annotations = Object.entries(t.metadata?.annotations ?? {}).filter(([key]) => key !== HASH_ANNOTATION);
      return { ...t, metadata: { ...t.metadata, annotations: Object.fromEntries(annotations) } };
    };
    expect(strip(changed)).toEqual(strip(shipped));
    expect(mountedConfig(changed, app).text).toBe(edit(mountedConfig(shipped, app).text));
  });

  it('mirror mode on top keeps the agent’s config hash (the component does not touch the config)', async () => {
    expect(configHash(await renderInstall({ components: ['containerd-mirror'] }), 'agent')).toBe(configHash(shipped, 'agent'));
  });
});
