import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import type { IService } from 'kubernetes-models/v1/Service';
import { beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import {
  allContainers,
  find,
  INSTALLS,
  K8S_DIR,
  kustomizationDirs,
  NAMESPACE,
  portNumber,
  quantity,
  renderInstalls,
  workloadOf,
  workloads,
  type K8sObject,
  type Workload,
} from './k8s-manifests.js';
import { unknownFields } from './unknown-fields.js';

type Model = new (data: never) => { validate(): void };
const SCHEMAS: Record<string, Model> = {
  'apps/v1/DaemonSet': DaemonSet,
  'apps/v1/Deployment': Deployment,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

const GiB = 2 ** 30;
/** The product's figures ("0.2 G" read as GiB; the manifests write 200Mi, 512Mi, 2Gi, 4Gi). */
const PRODUCT = {
  agent: {
    kind: 'DaemonSet',
    name: 'p2p-agent',
    requests: [0.2, 0.2 * GiB],
    limits: [4, 2 * GiB],
    ports: [5004, 6881],
    hostPath: '/p2p_agent_data',
  },
  proxy: {
    kind: 'Deployment',
    name: 'p2p-proxy',
    requests: [0.5, 0.5 * GiB],
    limits: [4, 4 * GiB],
    ports: [5005, 6882],
    hostPath: '/p2p_proxy_data',
  },
  tracker: {
    kind: 'Deployment',
    name: 'p2p-tracker',
    requests: [0.5, 0.5 * GiB],
    limits: [2, 4 * GiB],
    ports: [6969],
    hostPath: undefined,
  },
} as const;

/** Init containers allowed to run as root, with the capabilities each may add (reasons in the manifests). */
const ROOT_INIT_CONTAINERS: Record<string, string[]> = { 'data-dir-owner': ['CHOWN', 'FOWNER'], 'containerd-hosts': [] };

const DIRS = Object.keys(INSTALLS);
let rendered: Map<string, K8sObject[]>;

beforeAll(async () => {
  rendered = await renderInstalls();
});

const objectsOf = (dir: string) => rendered.get(dir)!;

function sameLabels(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  const entries = Object.entries(selector ?? {});
  return entries.length > 0 && entries.every(([k, v]) => labels?.[k] === v);
}

describe('k8s manifests (offline)', () => {
  it('k8s/ holds one install: no overlay a later `kubectl apply -k k8s/` would silently revert', () => {
    // k8s/monitoring belongs to the monitoring setup, applied on its own.
    const dirs = kustomizationDirs().filter((d) => !d.startsWith('k8s/monitoring'));
    // base: the parts (no config, never applied alone); script: a resource of the two components.
    expect(dirs).toEqual(['k8s', 'k8s/base', 'k8s/components/containerd-mirror/script']);
    const base = parse(readFileSync(join(K8S_DIR, 'base/kustomization.yaml'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(base).filter((k) => /generator|images|replicas|components/i.test(k))).toEqual([]);
  });

  describe.each(DIRS)('%s', (dir) => {
    it('renders with kubectl kustomize', () => {
      expect(objectsOf(dir).length).toBeGreaterThan(0);
    });

    it('validates every object against the Kubernetes schema', () => {
      for (const o of objectsOf(dir)) {
        const Schema = SCHEMAS[`${o.apiVersion}/${o.kind}`];
        expect(Schema, `${o.kind}/${o.metadata.name}: no schema`).toBeDefined();
        expect(() => new Schema(o as never).validate(), `${o.kind}/${o.metadata.name}`).not.toThrow();
      }
    });

    it('writes no field the schema does not know', () => {
      expect(unknownFields(objectsOf(dir))).toEqual([]);
    });

    it('puts everything in kube-system with the app.kubernetes.io labels', () => {
      for (const o of objectsOf(dir)) {
        const where = `${o.kind}/${o.metadata.name}`;
        expect(o.metadata.namespace, where).toBe(NAMESPACE);
        expect(o.metadata.labels?.['app.kubernetes.io/part-of'], where).toBe('p2p-image-accelerator');
        expect(o.metadata.labels?.['app.kubernetes.io/managed-by'], where).toBe('kustomize');
        expect(o.metadata.labels?.['app.kubernetes.io/name'], where).toMatch(/^p2p-/);
        expect(o.metadata.labels?.['app.kubernetes.io/component'], where).toBeTruthy();
      }
    });

    it('selects its own pods: workload selectors, Services and PDBs match pod template labels', () => {
      const pods = workloads(objectsOf(dir));
      for (const w of pods) {
        const labels = w.spec.template.metadata?.labels;
        expect(sameLabels(w.spec.selector.matchLabels, labels), `${w.kind}/${w.metadata.name} selector`).toBe(true);
        expect(labels?.['app.kubernetes.io/part-of'], `${w.metadata.name} template`).toBe('p2p-image-accelerator');
        // Selectors are immutable: nothing that changes per release may be in them.
        expect(Object.keys(w.spec.selector.matchLabels ?? {})).not.toContain('app.kubernetes.io/version');
        const others = pods.filter((p) => p !== w);
        expect(
          others.some((p) => sameLabels(w.spec.selector.matchLabels, p.spec.template.metadata?.labels)),
          `${w.metadata.name} selects foreign pods`,
        ).toBe(false);
      }
      for (const o of objectsOf(dir).filter((x) => x.kind === 'Service' || x.kind === 'PodDisruptionBudget')) {
        const spec = o.spec as { selector: Record<string, string> & { matchLabels?: Record<string, string> } };
        const selector = o.kind === 'Service' ? spec.selector : spec.selector.matchLabels;
        const targets = pods.filter((p) => sameLabels(selector, p.spec.template.metadata?.labels));
        expect(targets.length, `${o.kind}/${o.metadata.name} selects exactly one workload`).toBe(1);
        if (o.kind === 'Service') {
          const main = targets[0].spec.template.spec.containers[0];
          for (const port of (o as unknown as { spec: IService['spec'] }).spec!.ports!) {
            expect(portNumber(main, port.targetPort!), `${o.metadata.name}:${port.name}`).toBe(port.port);
          }
        }
      }
    });

    it('keeps every container tight: no privilege escalation, read-only root, all capabilities dropped', () => {
      for (const w of workloads(objectsOf(dir))) {
        const pod = w.spec.template.spec;
        expect(pod.automountServiceAccountToken, w.metadata.name).toBe(false);
        expect(pod.securityContext?.seccompProfile?.type, w.metadata.name).toBe('RuntimeDefault');
        for (const c of allContainers(pod)) {
          const where = `${w.metadata.name}/${c.name}`;
          const sc = c.securityContext;
          expect(sc?.allowPrivilegeEscalation, where).toBe(false);
          expect(sc?.readOnlyRootFilesystem, where).toBe(true);
          expect(sc?.capabilities?.drop, where).toEqual(['ALL']);
          expect(sc?.privileged, where).not.toBe(true);
          const runsAsRoot = (sc?.runAsUser ?? pod.securityContext?.runAsUser) === 0;
          const isInit = (pod.initContainers ?? []).includes(c);
          if (runsAsRoot || sc?.runAsNonRoot === false) {
            expect(isInit && c.name in ROOT_INIT_CONTAINERS, `${where} runs as root`).toBe(true);
            expect(sc?.capabilities?.add ?? [], where).toEqual(ROOT_INIT_CONTAINERS[c.name]);
          } else {
            expect(sc?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot, where).toBe(true);
            expect(sc?.runAsUser ?? pod.securityContext?.runAsUser, where).toBeGreaterThan(0);
            expect(sc?.capabilities?.add, where).toBeUndefined();
          }
          expect(c.resources?.requests && c.resources.limits, `${where} resources`).toBeTruthy();
          expect(c.image, where).toMatch(/^[^:@]+(:[\w.-]+|@sha256:[0-9a-f]{64})$/);
          expect(c.image, where).not.toMatch(/:latest$/);
        }
      }
    });
  });

  describe.each(DIRS)('product figures in %s', (dir) => {
    it.each(Object.entries(PRODUCT))('%s: kind, requests, limits, ports, hostPath', (app, want) => {
      const objects = objectsOf(dir);
      const w = workloadOf(objects, app as keyof typeof PRODUCT);
      expect([w.kind, w.metadata.name]).toEqual([want.kind, want.name]);
      const pod = w.spec.template.spec;
      const main = pod.containers[0];
      const r = main.resources!;
      const close = (got: number, expected: number) => Math.abs(got - expected) / expected < 0.03;
      expect(
        close(quantity(r.requests!.cpu), want.requests[0]) && close(quantity(r.requests!.memory), want.requests[1]),
        `${app} requests ${JSON.stringify(r.requests)}`,
      ).toBe(true);
      expect(
        close(quantity(r.limits!.cpu), want.limits[0]) && close(quantity(r.limits!.memory), want.limits[1]),
        `${app} limits ${JSON.stringify(r.limits)}`,
      ).toBe(true);
      // hostNetwork: container ports are node ports, so each is declared as the same hostPort.
      expect(pod.hostNetwork).toBe(true);
      expect(main.ports!.map((p) => [p.containerPort, p.hostPort ?? p.containerPort, p.protocol ?? 'TCP'])).toEqual(
        want.ports.map((p) => [p, p, 'TCP']),
      );
      // The app's own hostPath, mounted where the node keeps it (overlays may add others to init containers).
      const hostMounts = (main.volumeMounts ?? []).flatMap((m) => {
        const path = pod.volumes?.find((v) => v.name === m.name)?.hostPath?.path;
        return path ? [[path, m.mountPath, m.readOnly ?? false]] : [];
      });
      expect(hostMounts).toEqual(want.hostPath ? [[want.hostPath, want.hostPath, false]] : []);
    });

    it('agent: on every Linux node whatever its taints, node-critical, cluster DNS, rolling update', () => {
      const w = find<Workload & { spec: { updateStrategy?: { type?: string } } }>(objectsOf(dir), 'DaemonSet', 'p2p-agent');
      const pod = w.spec.template.spec;
      expect(pod.tolerations).toEqual([{ operator: 'Exists' }]);
      expect(pod.priorityClassName).toBe('system-node-critical');
      expect(pod.dnsPolicy).toBe('ClusterFirstWithHostNet');
      // The image is Linux-only: never scheduled on a Windows node, where it could not start.
      expect(pod.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux' });
      expect(w.spec.updateStrategy?.type).toBe('RollingUpdate');
    });

    it('every pod lists the optional pull Secret for the product’s own image', () => {
      for (const w of workloads(objectsOf(dir)))
        expect(w.spec.template.spec.imagePullSecrets, w.metadata.name).toEqual([{ name: 'p2p-image-pull' }]);
      // Optional by nature: kubelet pulls anonymously while it is missing, so the install does not ship it.
      expect(objectsOf(dir).some((o) => o.kind === 'Secret')).toBe(false);
    });

    it('mounts every ConfigMap as a directory (kubelet never updates subPath mounts)', () => {
      for (const w of workloads(objectsOf(dir))) {
        const pod = w.spec.template.spec;
        for (const c of allContainers(pod)) {
          for (const m of c.volumeMounts ?? []) {
            if (pod.volumes?.find((v) => v.name === m.name)?.configMap)
              expect(m.subPath, `${w.metadata.name}/${c.name} ${m.mountPath}`).toBeUndefined();
          }
        }
      }
    });

    it.each([
      ['p2p-proxy', { proxy: 'p2p-proxy' }],
      ['p2p-tracker', { tracker: 'p2p-tracker' }],
    ])('%s: on labelled nodes, at most one per node, with a PDB and a headless Service', (name, nodeSelector) => {
      const objects = objectsOf(dir);
      const w = find<Workload>(objects, 'Deployment', name);
      const pod = w.spec.template.spec;
      expect(pod.nodeSelector).toEqual(nodeSelector);
      // Every node's pulls lean on it; its labelled nodes may be set aside with the documented taint.
      expect(pod.priorityClassName).toBe('system-cluster-critical');
      expect(pod.tolerations).toEqual([{ key: 'dedicated', operator: 'Equal', value: 'p2p', effect: 'NoSchedule' }]);
      const anti = pod.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [];
      expect(
        anti.some(
          (t) => t.topologyKey === 'kubernetes.io/hostname' && sameLabels(t.labelSelector?.matchLabels, w.spec.template.metadata?.labels),
        ),
      ).toBe(true);
      const pdb = find<K8sObject & { spec: { maxUnavailable?: number | string; minAvailable?: number | string } }>(
        objects,
        'PodDisruptionBudget',
        name,
      );
      // A single replica must not block node drains forever.
      expect(pdb.spec.maxUnavailable ?? 0).not.toBe(0);
      const svc = find<K8sObject & { spec: { clusterIP?: string } }>(objects, 'Service', name);
      expect(svc.spec.clusterIP).toBe('None');
    });
  });

  it('containerd-mirror adds only the hosts.toml init container, its script and the certs.d hostPath', () => {
    const plain = workloadOf(objectsOf('k8s'), 'agent').spec.template.spec;
    const mirror = workloadOf(objectsOf('k8s + containerd-mirror'), 'agent').spec.template.spec;
    expect(mirror.containers).toEqual(plain.containers);
    expect(mirror.initContainers!.map((c) => c.name).sort()).toEqual(
      [...plain.initContainers!.map((c) => c.name), 'containerd-hosts'].sort(),
    );
    expect(
      mirror
        .volumes!.filter((v) => v.hostPath)
        .map((v) => v.hostPath!.path)
        .sort(),
    ).toEqual(['/etc/containerd/certs.d', '/p2p_agent_data']);
    find(objectsOf('k8s + containerd-mirror'), 'ConfigMap', 'p2p-containerd-mirror');
    expect(objectsOf('k8s').some((o) => o.metadata.name === 'p2p-containerd-mirror')).toBe(false);
  });

  it('containerd-mirror-off replaces that init container with the same script in remove mode, and needs no agent config', () => {
    const on = workloadOf(objectsOf('k8s + containerd-mirror'), 'agent').spec.template.spec;
    const off = workloadOf(objectsOf('k8s + containerd-mirror-off'), 'agent').spec.template.spec;
    expect(off.containers).toEqual(on.containers);
    const [write, remove] = [on, off].map((p) => p.initContainers!.find((c) => c.name === 'containerd-hosts')!);
    expect(write.command!.at(-1)).toBe('write');
    expect(remove.command).toEqual([...write.command!.slice(0, -1), 'remove']);
    expect(remove.securityContext).toEqual(write.securityContext);
    expect(remove.volumeMounts!.map((m) => m.name)).not.toContain('config');
    expect(off.volumes!.find((v) => v.name === 'containerd-certs')).toEqual(on.volumes!.find((v) => v.name === 'containerd-certs'));
  });

  it('catches what the schema library misses (so the checks above can fail)', () => {
    const agent = structuredClone<Workload>(workloadOf(objectsOf('k8s'), 'agent'));
    const container = agent.spec.template.spec.containers[0] as unknown as Record<string, unknown>;
    container.securityContex = container.securityContext;
    delete container.securityContext;
    expect(() => new DaemonSet(agent as never).validate()).not.toThrow();
    expect(unknownFields([agent]).join('\n')).toMatch(/securityContex/);

    const broken = structuredClone<Workload>(workloadOf(objectsOf('k8s'), 'agent'));
    delete (broken.spec as Partial<Workload['spec']>).selector;
    expect(() => new DaemonSet(broken as never).validate()).toThrow();
  });
});
