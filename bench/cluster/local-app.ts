import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

/** The repo root (holding bin/p2p), whether the bench runs from source (vitest) or from dist/. */
export const REPO_ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'bin', 'p2p'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('bin/p2p not found above the bench');
    dir = up;
  }
  return dir;
})();
export const P2P_BIN = join(REPO_ROOT, 'bin', 'p2p');

export interface LocalApp {
  proc: ChildProcess;
  port: number;
  url: string;
  stop(): Promise<void>;
}

/** Runs `bin/p2p <app>` on an ephemeral 127.0.0.1 port; resolves once it logs its address (bounded wait). */
export async function startLocalApp(
  app: 'agent' | 'proxy' | 'tracker',
  dir: string,
  config: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<LocalApp> {
  const file = join(dir, `${app}.yaml`);
  await writeFile(file, stringify({ port: 0, host: '127.0.0.1', logFormat: 'json', ...config }));
  // BENCH_APP_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles or tunes the apps, not the bench.
  const nodeArgs = (process.env.BENCH_APP_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const proc = spawn(process.execPath, [...nodeArgs, P2P_BIN, app, '--config', file], {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((res) => proc.once('exit', () => res()));
  let out = '';
  const port = await new Promise<number>((res, rej) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      rej(new Error(`${app} did not start in 30 s:\n${out.slice(-4000)}`));
    }, 30_000);
    const onData = (c: Buffer) => {
      out = (out + c.toString()).slice(-64 * 1024);
      const m = /listening on [^"\s]*:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        res(Number(m[1]));
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    void exited.then(() => {
      clearTimeout(timer);
      rej(new Error(`${app} exited before listening:\n${out.slice(-4000)}`));
    });
  });
  return {
    proc,
    port,
    url: `http://127.0.0.1:${port}`,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
}
