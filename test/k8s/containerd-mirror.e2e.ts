import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { ROOT, tempDir } from '../support/app-process.js';
import { configMapFile, find, mountedConfig, renderInstall, setprivFor, type K8sObject, type Workload } from './k8s-manifests.js';

const run = promisify(execFile);
const MARKER = '# managed-by: p2p-agent containerd-mirror';

let objects: K8sObject[];
let off: K8sObject[];
let work: string;
let script: string;
let init: IContainer;
let offInit: IContainer;
let pod: IPodSpec;

/**
 * Runs the init container's script as the pod would — its env, user and capabilities (none) — with
 * the node's certs.d moved to `certsDir`. `remove` runs containerd-mirror-off's init container.
 */
async function hostsToml(mode: 'write' | 'remove', certsDir: string, agentConfig: string, mirror?: string) {
  const container = mode === 'write' ? init : offInit;
  expect(container.command!.at(-1)).toBe(mode);
  const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? '']));
  return run('setpriv', [...setprivFor(pod, container), process.execPath, script, mode], {
    env: {
      ...process.env,
      ...env,
      CERTS_D: certsDir,
      P2P_AGENT_CONFIG: agentConfig,
      YAML_FROM: join(ROOT, 'package.json'),
      ...(mirror ? { MIRROR: mirror } : {}),
    },
  });
}

/** The shipped agent config, accelerating a private registry and Docker Hub, then `change`d. */
function agentConfigFile(name: string, change: (config: Record<string, unknown>) => void = () => undefined): string {
  const config = parse(mountedConfig(objects, 'agent').text) as Record<string, unknown>;
  config.registry = 'https://registry.example.com';
  config.registries = ['https://registry.example.com', 'https://registry-1.docker.io'];
  change(config);
  const file = join(work, name);
  writeFileSync(file, stringify(config));
  return file;
}

beforeAll(async () => {
  objects = await renderInstall({ components: ['containerd-mirror'] });
  off = await renderInstall({ components: ['containerd-mirror-off'] });
  work = await tempDir('p2p-k8s-mirror-');
  pod = find<Workload>(objects, 'DaemonSet', 'p2p-agent').spec.template.spec;
  init = pod.initContainers!.find((c) => c.name === 'containerd-hosts')!;
  offInit = find<Workload>(off, 'DaemonSet', 'p2p-agent').spec.template.spec.initContainers!.find((c) => c.name === 'containerd-hosts')!;
  const cm = find<K8sObject & { data: Record<string, string> }>(objects, 'ConfigMap', 'p2p-containerd-mirror');
  script = join(work, 'hosts-toml.mjs');
  writeFileSync(script, cm.data['hosts-toml.mjs']);
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

describe('containerd-mirror component (hosts.toml writer)', () => {
  it('wires the script, the agent config and the node certs.d into the init container', () => {
    const pod = find<Workload>(objects, 'DaemonSet', 'p2p-agent').spec.template.spec;
    const volumeOf = (path: string) => {
      const mount = init.volumeMounts!.find((m) => path === m.mountPath || path.startsWith(`${m.mountPath}/`));
      return { mount, volume: pod.volumes!.find((v) => v.name === mount?.name) };
    };
    const [, scriptPath, mode] = init.command!;
    expect(init.command![0]).toBe('node');
    expect(mode).toBe('write');
    expect(volumeOf(scriptPath).volume?.configMap?.name).toBe('p2p-containerd-mirror');
    const env = Object.fromEntries(init.env!.map((e) => [e.name, e.value]));
    expect(volumeOf(env.CERTS_D!).volume?.hostPath?.path).toBe('/etc/containerd/certs.d');
    expect(volumeOf(env.CERTS_D!).mount?.readOnly).not.toBe(true);
    // The agent's own file, from the same directory mount (so it is the one the agent reads).
    const agentFile = configMapFile(objects, pod, init, env.P2P_AGENT_CONFIG!);
    expect(agentFile.configMap).toBe('p2p-agent');
    expect(agentFile.text).toBe(mountedConfig(objects, 'agent').text);
    expect(volumeOf(env.P2P_AGENT_CONFIG!).mount?.subPath).toBeUndefined();
    expect(env.MIRROR).toBe('http://localhost:5004');
    expect(new URL(env.MIRROR!).port).toBe(String((parse(mountedConfig(objects, 'agent').text) as { port: number }).port));
    const main = pod.containers[0];
    expect(init.image).toBe(main.image);
  });

  it('writes one hosts.toml per accelerated registry, Docker Hub under docker.io', async () => {
    const certs = join(work, 'certs-write');
    await hostsToml('write', certs, agentConfigFile('agent-write.yaml'));
    expect(readFileSync(join(certs, 'registry.example.com/hosts.toml'), 'utf8')).toBe(
      `${MARKER} (edit the p2p-agent ConfigMap instead)\nserver = "https://registry.example.com"\n\n[host."http://localhost:5004"]\n  capabilities = ["pull", "resolve"]\n`,
    );
    expect(readFileSync(join(certs, 'docker.io/hosts.toml'), 'utf8')).toContain('server = "https://registry-1.docker.io"');
    expect(existsSync(join(certs, 'registry-1.docker.io'))).toBe(false);
  });

  it('leaves hosts.toml files it did not write alone, is idempotent, follows removals, and uninstalls only its own', async () => {
    const certs = join(work, 'certs-sync');
    const mine = join(certs, 'registry.example.com/hosts.toml');
    const theirs = join(certs, 'docker.io/hosts.toml');
    mkdirSync(join(certs, 'docker.io'), { recursive: true });
    writeFileSync(theirs, 'server = "https://mirror.internal"\n');
    const config = agentConfigFile('agent-sync.yaml');

    const first = await hostsToml('write', certs, config);
    expect(readFileSync(theirs, 'utf8')).toBe('server = "https://mirror.internal"\n');
    expect(first.stderr).toMatch(/left .*docker\.io\/hosts\.toml alone/);
    expect(readFileSync(mine, 'utf8').startsWith(MARKER)).toBe(true);

    const second = await hostsToml('write', certs, config);
    expect(second.stdout).not.toMatch(/wrote/);

    // A registry dropped from the config loses its file at the next agent start; a cert kept beside it stays.
    writeFileSync(join(certs, 'registry.example.com/ca.crt'), 'cert');
    await hostsToml(
      'write',
      certs,
      agentConfigFile('agent-fewer.yaml', (c) => {
        c.registry = 'https://registry-1.docker.io';
        c.registries = [];
      }),
    );
    expect(existsSync(mine)).toBe(false);
    expect(existsSync(join(certs, 'registry.example.com/ca.crt'))).toBe(true);

    await hostsToml('write', certs, config);
    await hostsToml('remove', certs, config);
    expect(existsSync(mine)).toBe(false);
    expect(readFileSync(theirs, 'utf8')).toBe('server = "https://mirror.internal"\n');
  });

  it('refuses a config it cannot read, writing nothing', async () => {
    const certs = join(work, 'certs-bad');
    const bad = agentConfigFile('agent-bad.yaml', (c) => (c.registries = ['ftp://registry.example.com']));
    await expect(hostsToml('write', certs, bad)).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/not an http\(s\) URL/) });
    expect(existsSync(certs)).toBe(false);
  });

  it('containerd-mirror-off runs the same script in remove mode, in the agent pod on every node', () => {
    const ds = find<Workload>(off, 'DaemonSet', 'p2p-agent').spec.template.spec;
    expect(ds.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(offInit.command!.slice(-1)).toEqual(['remove']);
    expect(offInit.command![1]).toBe(init.command![1]);
    const certsEnv = offInit.env!.find((e) => e.name === 'CERTS_D')!.value!;
    const mount = offInit.volumeMounts!.find((m) => m.mountPath === certsEnv)!;
    expect(ds.volumes!.find((v) => v.name === mount.name)?.hostPath?.path).toBe('/etc/containerd/certs.d');
    const same = (list: K8sObject[]) => find<K8sObject & { data: Record<string, string> }>(list, 'ConfigMap', 'p2p-containerd-mirror').data;
    expect(same(off)).toEqual(same(objects));
  });
});

describe('containerd reads the generated hosts.toml', () => {
  let containerd: ChildProcess | undefined;
  let recorder: Server | undefined;
  const seen: string[] = [];
  let sock: string;

  beforeAll(async () => {
    const dir = join(work, 'ctrd');
    mkdirSync(dir, { recursive: true });
    sock = join(dir, 'containerd.sock');
    writeFileSync(
      join(dir, 'config.toml'),
      `version = 2\nroot = "${dir}/root"\nstate = "${dir}/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "${sock}"\n`,
    );
    containerd = spawn('containerd', ['--config', join(dir, 'config.toml')], { stdio: 'ignore' });
    recorder = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"recorder"}]}');
    });
    await new Promise<void>((res) => recorder!.listen(0, '127.0.0.1', res));
    for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 100));
    expect(existsSync(sock), 'containerd socket').toBe(true);
  });

  afterAll(async () => {
    recorder?.close();
    if (containerd && containerd.exitCode === null) {
      const exited = new Promise((res) => containerd!.once('exit', res));
      containerd.kill('SIGTERM');
      await exited;
    }
  });

  it('a pull of an origin image asks the mirror first, with ?ns=<origin>', async () => {
    // The origin is a loopback port nobody listens on: only the mirror can answer.
    const closed = createServer();
    await new Promise<void>((res) => closed.listen(0, '127.0.0.1', res));
    const origin = `127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((res) => closed.close(res));
    const mirror = `http://127.0.0.1:${(recorder!.address() as AddressInfo).port}`;
    const certs = join(work, 'certs-ctr');
    await hostsToml(
      'write',
      certs,
      agentConfigFile('agent-ctr.yaml', (c) => {
        c.registry = `http://${origin}`;
        c.registries = [];
      }),
      mirror,
    );
    expect(existsSync(join(certs, origin, 'hosts.toml'))).toBe(true);

    const pull = run(
      'ctr',
      ['--address', sock, '-n', `k8s-test-${Date.now()}`, 'images', 'pull', '--hosts-dir', certs, `${origin}/team/app:1.0`],
      { timeout: 30_000 },
    );
    await expect(pull).rejects.toThrow();
    expect(seen).toContain(`HEAD /v2/team/app/manifests/1.0?ns=${encodeURIComponent(origin)}`);
  });

  it('localhost:<port>/… image names need no node config: containerd speaks plain HTTP to localhost', async () => {
    const port = (recorder!.address() as AddressInfo).port;
    const empty = join(work, 'certs-empty');
    mkdirSync(empty, { recursive: true });
    const pull = run(
      'ctr',
      ['--address', sock, '-n', `k8s-test-${Date.now()}`, 'images', 'pull', '--hosts-dir', empty, `localhost:${port}/team/app:2.0`],
      { timeout: 30_000 },
    );
    await expect(pull).rejects.toThrow(/not found/);
    expect(seen).toContain('HEAD /v2/team/app/manifests/2.0');
  });
});
