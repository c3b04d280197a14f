import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, isAbsolute, join, relative } from 'node:path';
import { promisify } from 'node:util';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import { parse, parseAllDocuments } from 'yaml';
import { ROOT } from '../support/app-process.js';

const run = promisify(execFile);

export const K8S_DIR = join(ROOT, 'k8s');
export const NAMESPACE = 'kube-system';
export type AppName = 'agent' | 'proxy' | 'tracker';
export const APPS: readonly AppName[] = ['agent', 'proxy', 'tracker'];

/** One rendered object; typed access goes through the kubernetes-models interfaces below. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

export interface Workload extends K8sObject {
  spec: {
    selector: { matchLabels?: Record<string, string> };
    template: { metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> }; spec: IPodSpec };
  };
}

/** Every folder under k8s/ holding a kustomization (Components only render through the install). */
export function kustomizationDirs(): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name === 'kustomization.yaml') {
        const doc = parse(readFileSync(path, 'utf8')) as { kind?: string };
        if (doc.kind !== 'Component') found.push(relative(ROOT, dir));
      }
    }
  };
  walk(K8S_DIR);
  return found.sort();
}

/** `kubectl kustomize <dir>` (offline, kustomize built into kubectl) parsed into objects. */
export async function render(dir: string): Promise<K8sObject[]> {
  const { stdout, stderr } = await run('kubectl', ['kustomize', isAbsolute(dir) ? dir : join(ROOT, dir)], { maxBuffer: 16 * 2 ** 20 });
  // Deprecation warnings today are errors in the next kustomize.
  if (stderr.trim()) throw new Error(`kubectl kustomize ${dir} warned:\n${stderr}`);
  return parseAllDocuments(stdout)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${dir}: ${doc.errors[0].message}`);
      return doc.toJS() as K8sObject | null;
    })
    .filter((o): o is K8sObject => o !== null);
}

/** The optional parts of the install, switched on in k8s/kustomization.yaml `components:`. */
type Component = 'containerd-mirror' | 'containerd-mirror-off' | 'proxy-tls';

/** What an operator changes in k8s/: components to uncomment, files to rewrite (paths under k8s/). */
export interface InstallChange {
  components?: Component[];
  files?: Record<string, (text: string) => string>;
}

/**
 * Renders the install as an operator would after editing it: a copy of k8s/ in a temp dir, with
 * the `# - components/<name>` lines of kustomization.yaml uncommented (exactly as the comments
 * there tell the operator to) and the given files rewritten. Fails if a line to uncomment is absent.
 */
export async function renderInstall(change: InstallChange = {}): Promise<K8sObject[]> {
  const dir = mkdtempSync(join(tmpdir(), 'p2p-k8s-install-'));
  try {
    const copy = join(dir, 'k8s');
    cpSync(K8S_DIR, copy, { recursive: true });
    const files: Record<string, (text: string) => string> = { ...change.files };
    if (change.components?.length) {
      const previous = files['kustomization.yaml'] ?? ((t: string) => t);
      files['kustomization.yaml'] = (text) =>
        change.components!.reduce((t, name) => {
          const line = `  # - components/${name}\n`;
          if (!t.includes(line)) throw new Error(`k8s/kustomization.yaml has no line "${line.trim()}" to uncomment`);
          return t.replace(line, `  - components/${name}\n`);
        }, previous(text));
    }
    for (const [file, edit] of Object.entries(files)) {
      const path = join(copy, file);
      writeFileSync(path, edit(readFileSync(path, 'utf8')));
    }
    return await render(copy);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The renders every generic check runs on: the install as shipped, and with each component on. */
export const INSTALLS: Record<string, InstallChange> = {
  k8s: {},
  'k8s + containerd-mirror': { components: ['containerd-mirror'] },
  'k8s + containerd-mirror-off': { components: ['containerd-mirror-off'] },
  'k8s + proxy-tls': { components: ['proxy-tls'] },
};

export async function renderInstalls(): Promise<Map<string, K8sObject[]>> {
  const out = new Map<string, K8sObject[]>();
  for (const [name, change] of Object.entries(INSTALLS)) out.set(name, await renderInstall(change));
  return out;
}

// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- callers name the object type they expect (find<Workload>(…)); the kind/name lookup checks it at run time
export function find<T extends K8sObject = K8sObject>(objects: K8sObject[], kind: string, name: string): T {
  const hit = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!hit) throw new Error(`no ${kind}/${name} among ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  return hit as T;
}

function isWorkload(o: K8sObject): o is Workload {
  return ['DaemonSet', 'Deployment', 'StatefulSet', 'Job'].includes(o.kind);
}

export function workloads(objects: K8sObject[]): Workload[] {
  return objects.filter(isWorkload);
}

/** The workload running `app` (its main container's first argument names the app). */
export function workloadOf(objects: K8sObject[], app: AppName): Workload {
  const hit = workloads(objects).find((w) => w.spec.template.spec.containers[0]?.args?.[0] === app);
  if (!hit) throw new Error(`no workload runs "p2p ${app}"`);
  return hit;
}

export function allContainers(pod: IPodSpec): IContainer[] {
  return [...(pod.initContainers ?? []), ...pod.containers];
}

/** The number behind a container port name (or the number itself). */
export function portNumber(container: IContainer, port: string | number): number {
  if (typeof port === 'number') return port;
  const hit = container.ports?.find((p) => p.name === port);
  if (!hit) throw new Error(`container ${container.name} has no port named ${port}`);
  return hit.containerPort;
}

/**
 * The file `path` as `container` sees it, when it comes from a ConfigMap mounted as a directory
 * (no subPath: kubelet never updates subPath mounts, so live edits would never reach the app).
 */
export function configMapFile(
  objects: K8sObject[],
  pod: IPodSpec,
  container: IContainer,
  path: string,
): { text: string; configMap: string; mountPath: string } {
  const mount = container.volumeMounts?.find((m) => m.mountPath === dirname(path));
  if (!mount) throw new Error(`${container.name}: no volume mounted at ${dirname(path)} (the directory of ${path})`);
  if (mount.subPath) throw new Error(`${container.name}: ${mount.mountPath} is a subPath mount, which kubelet never updates`);
  const cmName = pod.volumes?.find((v) => v.name === mount.name)?.configMap?.name;
  if (!cmName) throw new Error(`${container.name}: ${mount.mountPath} is not a ConfigMap volume`);
  const cm = find<K8sObject & { data?: Record<string, string> }>(objects, 'ConfigMap', cmName);
  const text = cm.data?.[basename(path)];
  if (text === undefined) throw new Error(`ConfigMap ${cmName} has no key ${basename(path)}`);
  return { text, configMap: cmName, mountPath: mount.mountPath };
}

/** The app's config file as mounted into its main container: ConfigMap text and the path the app reads. */
export function mountedConfig(objects: K8sObject[], app: AppName): { text: string; path: string; configMap: string } {
  const pod = workloadOf(objects, app).spec.template.spec;
  const main = pod.containers[0];
  const path = main.args?.[main.args.indexOf('--config') + 1];
  if (!path || !main.args?.includes('--config')) throw new Error(`${app}: no --config argument`);
  const { text, configMap } = configMapFile(objects, pod, main, path);
  return { text, path, configMap };
}

/** Mount path of the token Secret volume (p2p-tokens) in the app's main container. */
export function secretMount(objects: K8sObject[], app: AppName): { secretName: string; optional: boolean; mountPath: string } {
  const pod = workloadOf(objects, app).spec.template.spec;
  for (const mount of pod.containers[0].volumeMounts ?? []) {
    const secret = pod.volumes?.find((v) => v.name === mount.name)?.secret;
    if (secret?.secretName === 'p2p-tokens')
      return { secretName: secret.secretName, optional: secret.optional === true, mountPath: mount.mountPath };
  }
  throw new Error(`${app}: no token Secret (p2p-tokens) mounted`);
}

const SUFFIXES: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

/** Kubernetes quantity ("200m", "4", "2Gi") as a plain number. */
export function quantity(value: string | number | undefined): number {
  if (typeof value === 'number') return value;
  const m = /^(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(value ?? '');
  if (!m) throw new Error(`not a quantity: ${value}`);
  return Number(m[1]) * SUFFIXES[m[2] ?? ''];
}

/** docs/install.md, whose commands must name the objects the manifests use. */
export function installDoc(): string {
  return readFileSync(join(ROOT, 'docs/install.md'), 'utf8');
}

/** The Secret as docs/install.md tells users to create it: name and key names. */
export function documentedSecret(): { name: string; keys: string[] } {
  const doc = installDoc();
  const m = /kubectl -n kube-system create secret generic (\S+)(.*)/.exec(doc);
  if (!m) throw new Error('docs/install.md has no `kubectl -n kube-system create secret generic` command');
  return { name: m[1], keys: [...m[2].matchAll(/--from-literal=([\w-]+)=/g)].map((k) => k[1]) };
}

/**
 * `setpriv` arguments that run a command with a container's identity and privileges: its user and
 * group, the pod's fsGroup as supplementary group, only the capabilities it adds (bounding set),
 * and no_new_privs when privilege escalation is off. What the runtime adds on top (namespaces,
 * seccomp, read-only root) is not emulated.
 */
export function setprivFor(pod: IPodSpec, container: IContainer): string[] {
  const sc = container.securityContext ?? {};
  const uid = sc.runAsUser ?? pod.securityContext?.runAsUser ?? 0;
  const gid = sc.runAsGroup ?? pod.securityContext?.runAsGroup ?? 0;
  const fsGroup = pod.securityContext?.fsGroup;
  const caps = (sc.capabilities?.add ?? []).map((c) => `+${c.toLowerCase()}`);
  return [
    '--reuid',
    String(uid),
    '--regid',
    String(gid),
    ...(fsGroup !== undefined ? ['--groups', String(fsGroup)] : ['--clear-groups']),
    '--inh-caps',
    '-all',
    '--bounding-set',
    ['-all', ...caps].join(','),
    ...(sc.allowPrivilegeEscalation === false ? ['--no-new-privs'] : []),
    '--',
  ];
}
