import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = join(ROOT, 'bin/p2p');

export interface AppProcess {
  proc: ChildProcess;
  /** http://127.0.0.1:<port> of the real listening port. */
  url: string;
  port: number;
  /** Everything the process wrote so far (stdout + stderr). */
  output(): string;
  /** What the process wrote to stdout only (its log lines). */
  stdout(): string;
  /** Its log lines so far, parsed (the apps run with `logFormat: json` unless a test says otherwise). */
  logs(): LogLine[];
  /** SIGTERM and wait; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

/** One JSON log line of an app: the fixed keys and the domain fields (digest, bytes, durationMs, …) at top level. */
export interface LogLine {
  level: string;
  time: string;
  app: string;
  context?: string;
  msg: string;
  [field: string]: unknown;
}

/**
 * The JSON log lines in `text`, complete lines only (a process may be mid-line); lines that are not
 * JSON objects (e.g. Node's own warnings on stderr) are skipped.
 */
export function parseLogLines(text: string): LogLine[] {
  return text
    .slice(0, text.lastIndexOf('\n') + 1)
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

/** The lines whose fields equal every value in `fields` (a RegExp tests a string field instead). */
export function findLogs(lines: LogLine[], fields: Record<string, unknown>): LogLine[] {
  return lines.filter((line) =>
    Object.entries(fields).every(([k, v]) => (v instanceof RegExp ? typeof line[k] === 'string' && v.test(line[k]) : line[k] === v)),
  );
}

const madeDirs = new Set<string>();

/** A fresh directory under the OS temp dir, removed after the test file (see temp-dirs.setup.ts). */
export async function tempDir(prefix = 'p2p-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  madeDirs.add(dir);
  return dir;
}

/**
 * Removes every directory `tempDir` made in this test file. Tests leave GBs of layers, caches and
 * torrent data behind otherwise (78 GB after a day of runs here). `P2P_KEEP_TEST_DIRS=1` keeps
 * them for a post-mortem.
 */
export async function removeTempDirs(): Promise<void> {
  if (process.env.P2P_KEEP_TEST_DIRS === '1') return;
  const dirs = [...madeDirs];
  madeDirs.clear();
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
}

/** Writes a YAML config into `dir` and returns its path. */
export async function writeConfig(dir: string, config: Record<string, unknown>, name = 'config.yaml'): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, stringify(config));
  return file;
}

/**
 * Runs `bin/p2p <app> --config FILE` (compiled code, as users run it) with `port: 0` unless given,
 * and resolves once the app logs its listening address. Readiness is the app's own log line, not
 * a sleep.
 */
export async function startApp(
  app: 'agent' | 'proxy' | 'tracker',
  config: Record<string, unknown>,
  options: { env?: NodeJS.ProcessEnv; dir?: string; timeoutMs?: number; cwd?: string; configName?: string } = {},
): Promise<AppProcess> {
  const dir = options.dir ?? (await tempDir());
  // Ephemeral ports everywhere (HTTP and, for agent and proxy, BitTorrent) so tests never collide.
  // A small free-space floor: the default (20 % of the filesystem) would make the suite depend on
  // how full the machine's disk is; tests of the floor set theirs.
  const defaults = { port: 0, host: '127.0.0.1', logFormat: 'json', ...(app === 'tracker' ? {} : { p2pPort: 0, minFreeSpace: '10MB' }) };
  // Apps apply edits of their config file live: two apps started in one dir must not share a file
  // (the second's config would be reloaded into the first).
  const file = await writeConfig(dir, { ...defaults, ...config }, options.configName ?? freshName(dir, app));
  const proc = spawn(process.execPath, [BIN, app, '--config', file], {
    env: { ...process.env, ...options.env },
    cwd: options.cwd ?? ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let stdout = '';
  proc.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const exited = new Promise<number | null>((res) => proc.on('exit', (code) => res(code)));
  const port = await new Promise<number>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${app} did not start in time:\n${out}`)), options.timeoutMs ?? 20_000);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const m = /listening on [^"\s]*:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        res(Number(m[1]));
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`${app} exited with ${code} before listening:\n${out}`));
    });
  });
  return {
    proc,
    port,
    url: `http://127.0.0.1:${port}`,
    output: () => out,
    stdout: () => stdout,
    logs: () => parseLogLines(stdout),
    exited,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

function freshName(dir: string, app: string): string {
  for (let n = 1; ; n++) {
    const name = n === 1 ? `${app}.yaml` : `${app}-${n}.yaml`;
    if (!existsSync(join(dir, name))) return name;
  }
}

/** Runs the CLI to completion (for --help and config errors). */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const proc = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, cwd: ROOT });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    proc.on('exit', (code) => res({ code, stdout, stderr }));
  });
}
