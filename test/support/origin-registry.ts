import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './app-process.js';

const exec = promisify(execFile);

export interface OriginRegistry {
  /** http://127.0.0.1:<port> */
  url: string;
  /** 127.0.0.1:<port> (what skopeo, containerd and `?ns=` use). */
  host: string;
  port: number;
  pid: number;
  /** Scratch dir holding config, storage and htpasswd (removed by stop()). */
  dir: string;
  /** Registry GETs of blobs seen in its access log so far, optionally only of one digest. */
  blobGets(digest?: string): number;
  /** Everything the registry wrote to stderr (its access log). */
  log(): string;
  /** Kills the registry by PID, waits for it to exit and removes its dir. */
  stop(): Promise<void>;
}

export interface OriginRegistryOptions {
  /** Enables htpasswd (Basic) auth with this one user. */
  auth?: { username: string; password: string };
  /** Reuse a storage dir (e.g. to restart with the same content). */
  dir?: string;
  /** A whole `auth:` section of the registry config instead (e.g. token auth, see token-origin.ts). */
  authYaml?: string;
}

/** A free TCP port on 127.0.0.1 (closed again before returning). */
export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => res(port));
    });
  });
}

/**
 * Starts CNCF Distribution (`docker-registry serve`) on 127.0.0.1 with a free port, optionally with
 * htpasswd auth, and resolves once `GET /v2/` answers (200, or 401 with a Basic challenge).
 */
export async function startOriginRegistry(options: OriginRegistryOptions = {}): Promise<OriginRegistry> {
  const dir = options.dir ?? (await tempDir('p2p-origin-'));
  await mkdir(join(dir, 'storage'), { recursive: true });
  const port = await freePort();
  let auth = options.authYaml ?? '';
  if (options.auth) {
    const { stdout } = await exec('htpasswd', ['-Bbn', options.auth.username, options.auth.password]);
    await writeFile(join(dir, 'htpasswd'), stdout);
    auth = `auth:\n  htpasswd:\n    realm: basic-realm\n    path: ${join(dir, 'htpasswd')}\n`;
  }
  const config = join(dir, 'config.yml');
  await writeFile(
    config,
    `version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'storage')}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n${auth}`,
  );
  const proc: ChildProcess = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout!.on('data', (c: Buffer) => (log += c.toString()));
  proc.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  const exited = new Promise<void>((res) => proc.once('exit', () => res()));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
    if (!options.dir) await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(async () => {
      if (proc.exitCode !== null) throw new Error(`docker-registry exited early:\n${log}`);
      const res = await fetch(`${url}/v2/`).catch(() => undefined);
      return res !== undefined && (res.status === 200 || res.status === 401);
    }, 10_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url,
    host: `127.0.0.1:${port}`,
    port,
    pid: proc.pid!,
    dir,
    log: () => log,
    blobGets(digest?: string) {
      // Access log lines look like: "GET /v2/<repo>/blobs/sha256:… HTTP/1.1" 200 …
      const re = /"GET \/v2\/\S+\/blobs\/(sha256:[a-f0-9]{64})\S* HTTP\/1\.1" (\d{3})/g;
      let n = 0;
      for (const m of log.matchAll(re)) if ((!digest || m[1] === digest) && (m[2] === '200' || m[2] === '206')) n++;
      return n;
    },
    stop,
  };
}

/** Polls `check` every 50 ms until it returns true or `timeoutMs` passes (bounded; never a bare sleep). */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs: number, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
