import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { DatapathBenchError } from './datapath-stats.js';
import { quiesce } from './proc-sampler.js';

/** Every child this bench started, so teardown and SIGINT stop exactly those, by PID. */
const children = new Set<ChildProcess>();
/** Set by stopAllChildren: a step still running when SIGINT arrived must not leave a new process behind. */
let closing = false;

function track(proc: ChildProcess): ChildProcess {
  if (closing) proc.kill('SIGKILL');
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  return proc;
}

function exitOf(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((res) => proc.once('exit', () => res()));
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
async function stopProcess(proc: ChildProcess, graceMs = 5000): Promise<void> {
  const exited = exitOf(proc);
  if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export async function stopAllChildren(): Promise<void> {
  closing = true;
  await Promise.all([...children].map((p) => stopProcess(p)));
}

/** Runs a command to completion; rejects with its output tail on a non-zero exit. */
export function run(
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<string> {
  return new Promise((res, rej) => {
    const proc = track(spawn(cmd, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    proc.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    proc.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-8000)));
    const timer = options.timeoutMs ? setTimeout(() => proc.kill('SIGKILL'), options.timeoutMs) : undefined;
    proc.once('error', (err) => rej(new DatapathBenchError(`${cmd}: ${err.message}`)));
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) res(stdout);
      else rej(new DatapathBenchError(`${cmd} ${args.join(' ')} exited with ${code ?? signal}:\n${stderr || stdout.slice(-4000)}`));
    });
  });
}

export type AppName = 'agent' | 'proxy' | 'tracker';

export interface RunningApp {
  name: string;
  pid: number;
  port: number;
  url: string;
  /** The last 16 kB of its log, for failure messages. */
  logTail(): string;
  stop(): Promise<void>;
}

/**
 * Runs `<root>/bin/p2p <app> --config FILE` with cwd `root` (so `#ops` etc. resolve to that build's
 * dist/) on an ephemeral 127.0.0.1 port; resolves once the app logs its listening address.
 * BENCH_APP_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") is passed to node, as in the
 * cluster bench.
 */
export async function startApp(
  root: string,
  app: AppName,
  name: string,
  dir: string,
  config: Record<string, unknown>,
): Promise<RunningApp> {
  const file = join(dir, `${name}.yaml`);
  await writeFile(file, stringify({ port: 0, host: '127.0.0.1', logFormat: 'json', shutdownGraceSeconds: 1, ...config }));
  const nodeArgs = (process.env.BENCH_APP_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const proc = track(
    spawn(process.execPath, [...nodeArgs, join(root, 'bin', 'p2p'), app, '--config', file], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  let log = '';
  // BENCH_APP_LOG_DIR keeps every app's whole output (e.g. with BENCH_APP_NODE_ARGS=--trace-gc).
  const logDir = process.env.BENCH_APP_LOG_DIR;
  if (logDir) {
    const out = createWriteStream(join(logDir, `${name}.log`));
    proc.stdout?.pipe(out);
    proc.stderr?.pipe(out);
  }
  const port = await new Promise<number>((res, rej) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      rej(new DatapathBenchError(`${name} did not start in 30 s:\n${log.slice(-4000)}`));
    }, 30_000);
    const onData = (c: Buffer) => {
      log = (log + c.toString()).slice(-16_384);
      const m = /listening on [^"\s]*:(\d+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        res(Number(m[1]));
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      rej(new DatapathBenchError(`${name} exited (${code ?? signal}):\n${log.slice(-4000)}`));
    });
  });
  return { name, pid: proc.pid!, port, url: `http://127.0.0.1:${port}`, logTail: () => log, stop: () => stopProcess(proc) };
}

/** A profiler attached to a running app (see --attach-proxy); `stop()` sends SIGINT and waits for it to write its output. */
export interface Attached {
  stop(): Promise<void>;
}

/**
 * Starts `argv` with `{pid}` and `{out}` substituted, and resolves once the file it names under
 * `{out}` exists (at most 10 s) and the profiler has gone quiet (at most 5 s); its output goes to
 * `<out>.log`.
 */
export async function attachTo(argv: string[], pid: number, out: string): Promise<Attached> {
  const args = argv.map((a) => a.replaceAll('{pid}', String(pid)).replaceAll('{out}', out));
  const files = args.filter((_, i) => argv[i].includes('{out}'));
  const logFile = await open(`${out}.log`, 'w');
  const proc = track(spawn(args[0], args.slice(1), { stdio: ['ignore', logFile.fd, logFile.fd] }));
  const exited = exitOf(proc).finally(() => logFile.close());
  const deadline = Date.now() + 10_000;
  while (files.length > 0 && !files.every((f) => existsSync(f)) && Date.now() < deadline) {
    if (proc.exitCode !== null) throw new DatapathBenchError(`${args.join(' ')} exited with ${proc.exitCode}; see ${out}.log`);
    await new Promise((r) => setTimeout(r, 50));
  }
  // The file exists before the profiler has attached to every thread (perf sets up its events
  // after creating it): its own CPU going quiet is the sign it is done and recording.
  if (proc.pid !== undefined) await quiesce([proc.pid]);
  return {
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGINT');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
