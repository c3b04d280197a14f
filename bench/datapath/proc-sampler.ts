import { readFile } from 'node:fs/promises';
import { parseStatTicks, parseVmRss } from './datapath-stats.js';

/** CPU clock ticks of a process: all its threads, and its main thread alone (tid = pid). */
export interface CpuTicks {
  total: number;
  main: number;
}

export async function cpuTicks(pid: number): Promise<CpuTicks> {
  const [total, main] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8'), readFile(`/proc/${pid}/task/${pid}/stat`, 'utf8')]);
  return { total: parseStatTicks(total), main: parseStatTicks(main) };
}

async function cpuTicksOf(pids: number[]): Promise<CpuTicks> {
  const all = await Promise.all(pids.map(cpuTicks));
  return all.reduce((a, b) => ({ total: a.total + b.total, main: a.main + b.main }), { total: 0, main: 0 });
}

/**
 * Waits until the processes have used no CPU over two consecutive 100 ms polls (bounded), so work
 * left over from a start-up or a previous transfer is not charged to the next one.
 */
export async function quiesce(pids: number[], timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = (await cpuTicksOf(pids)).total;
  let still = 0;
  while (still < 2 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    const now = (await cpuTicksOf(pids)).total;
    still = now === last ? still + 1 : 0;
    last = now;
  }
}

/** Samples VmRSS of each process every 20 ms until stopped; peaks in bytes, by pid. */
export function rssSampler(pids: number[]): { stop(): Map<number, number> } {
  const peaks = new Map(pids.map((p) => [p, 0]));
  let busy = false;
  const sample = async () => {
    // A slow read must not stack up behind the timer on a busy machine.
    if (busy) return;
    busy = true;
    for (const pid of pids) {
      const rss = parseVmRss(await readFile(`/proc/${pid}/status`, 'utf8').catch(() => ''));
      if (rss > peaks.get(pid)!) peaks.set(pid, rss);
    }
    busy = false;
  };
  const timer = setInterval(() => void sample(), 20);
  void sample();
  return {
    stop() {
      clearInterval(timer);
      return peaks;
    },
  };
}
