import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from '../support/app-process.js';

const SCRIPT = join(ROOT, 'test/swarm/fixtures/swarm-peer.mjs');

export interface PeerEvent {
  event: string;
  at: number;
  [key: string]: unknown;
}

/** A SwarmClient in its own node process (test/swarm/fixtures/swarm-peer.mjs, compiled code). */
export interface PeerProcess {
  proc: ChildProcess;
  events: PeerEvent[];
  /** Resolves with the first event named `event` (matching `pred`), bounded by `timeoutMs`. */
  waitFor(event: string, pred?: (e: PeerEvent) => boolean, timeoutMs?: number): Promise<PeerEvent>;
  send(cmd: Record<string, unknown>): void;
  output(): string;
  stop(): Promise<void>;
}

export function startPeer(config: Record<string, unknown>): PeerProcess {
  const proc = spawn(process.execPath, [SCRIPT, JSON.stringify(config)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  const events: PeerEvent[] = [];
  const waiters = new Set<() => void>();
  let out = '';
  let buf = '';
  proc.stdout.on('data', (chunk: Buffer) => {
    buf += chunk.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      out += `${line}\n`;
      if (line.startsWith('{"event"')) events.push(JSON.parse(line) as PeerEvent);
      for (const w of waiters) w();
    }
  });
  proc.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  proc.on('exit', () => {
    for (const w of waiters) w();
  });
  return {
    proc,
    events,
    output: () => out,
    send: (cmd) => proc.stdin.write(`${JSON.stringify(cmd)}\n`),
    waitFor(event, pred = () => true, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = events.find((e) => e.event === event && pred(e));
          if (found) {
            done();
            resolve(found);
          } else if (proc.exitCode !== null || proc.signalCode !== null) {
            done();
            reject(new Error(`peer exited before ${event}:\n${out.slice(-3000)}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out waiting for ${event}:\n${out.slice(-3000)}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const killer = setTimeout(() => proc.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(killer);
      }
    },
  };
}

/** Average rate (bytes/s) over progress events in [from, to] (epoch ms). */
export function rateBetween(events: PeerEvent[], from: number, to: number): number {
  const window = events.filter((e) => e.event === 'progress' && e.at >= from && e.at <= to);
  const first = window[0];
  const last = window.at(-1);
  if (!first || !last || last.at === first.at) return NaN;
  return (((last.bytes as number) - (first.bytes as number)) * 1000) / (last.at - first.at);
}
