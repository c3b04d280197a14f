import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './app-process.js';
import { waitFor } from './origin-registry.js';

const exec = promisify(execFile);

export interface Containerd {
  /** Socket path for `ctr --address`. */
  address: string;
  dir: string;
  pid: number;
  /** Writes `<hostsDir>/<originHost>/hosts.toml` sending pulls of `originHost` to `mirrorUrl` first. */
  mirrorHosts(originHost: string, mirrorUrl: string): Promise<string>;
  /**
   * `ctr -n <namespace> images pull --plain-http --hosts-dir <hostsDir> <ref>` (a fresh namespace per
   * call forces a real download). Resolves with ctr's exit status and output.
   */
  pull(
    ref: string,
    options: { hostsDir: string; user?: string; namespace?: string; unpack?: boolean },
  ): Promise<{ ok: boolean; output: string }>;
  /** Kills containerd by PID, waits for it and removes its dir. */
  stop(): Promise<void>;
}

let namespaceSeq = 0;

/** Starts a private containerd (no CRI, isolated content store) on a socket in a temp dir. */
export async function startContainerd(): Promise<Containerd> {
  const dir = await tempDir('p2p-ctrd-');
  const address = join(dir, 'containerd.sock');
  const config = join(dir, 'config.toml');
  await writeFile(
    config,
    [
      'version = 2',
      `root = "${join(dir, 'root')}"`,
      `state = "${join(dir, 'state')}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${address}"`,
      '[plugins."io.containerd.metadata.v1.bolt"]',
      '  content_sharing_policy = "isolated"',
      '',
    ].join('\n'),
  );
  const proc: ChildProcess = spawn('containerd', ['--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout!.on('data', (c: Buffer) => (log += c.toString()));
  proc.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  const exited = new Promise<void>((res) => proc.once('exit', () => res()));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      async () => {
        if (proc.exitCode !== null) throw new Error(`containerd exited early:\n${log.slice(-2000)}`);
        return exec('ctr', ['--address', address, 'version']).then(
          () => true,
          () => false,
        );
      },
      20_000,
      'containerd socket',
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    address,
    dir,
    pid: proc.pid!,
    async mirrorHosts(originHost, mirrorUrl) {
      const hostsDir = join(dir, `certs-${++namespaceSeq}`);
      await mkdir(join(hostsDir, originHost), { recursive: true });
      await writeFile(
        join(hostsDir, originHost, 'hosts.toml'),
        `server = "http://${originHost}"\n\n[host."${mirrorUrl}"]\n  capabilities = ["pull", "resolve"]\n`,
      );
      return hostsDir;
    },
    async pull(ref, options) {
      const ns = options.namespace ?? `test-${process.pid}-${++namespaceSeq}`;
      const args = ['--address', address, '-n', ns, 'images', 'pull', '--plain-http', '--hosts-dir', options.hostsDir];
      if (options.user) args.push('--user', options.user);
      args.push(ref);
      try {
        const { stdout, stderr } = await exec('ctr', args, { timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
        return { ok: true, output: stdout + stderr };
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string; message: string };
        return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}${e.message}` };
      }
    },
    stop,
  };
}
