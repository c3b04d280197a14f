import { parseArgs } from 'node:util';

/** Thrown for bad command lines and for a transfer or build step that did not do its job. */
export class DatapathBenchError extends Error {
  override readonly name = 'DatapathBenchError';
}

export const ROWS = ['agent-warm', 'proxy-seed', 'agents-3', 'agent-origin', 'proxy-cold', 'direct'] as const;
export type RowName = (typeof ROWS)[number];
export type BuildName = 'baseline' | 'candidate';

export interface BenchOptions {
  /** Git ref built in a worktree and run alternately with the candidate; undefined = candidate only. */
  baseline?: string;
  /** Root (holding bin/p2p and dist/) of the candidate build; the working tree by default. */
  candidateDir?: string;
  rounds: number;
  rows: RowName[];
  /** Random payload of each test layer, in 10^6 bytes. */
  blobMb: number;
  /** Remove the baseline worktree at the end instead of keeping it built for the next run. */
  removeBaseline: boolean;
  /**
   * A profiler run against each build's proxy during every proxy-cold transfer (e.g.
   * `perf record -g -p {pid} -o {out}.data` or `strace -f -c -p {pid} -o {out}.txt`): `{pid}` is the
   * proxy's PID, `{out}` a path prefix in the result dir; started before the transfer, SIGINT after it.
   */
  attachProxy?: string[];
  help: boolean;
}

export const USAGE = `Usage: npm run bench:datapath -- [--baseline REF] [--candidate-dir DIR] [--rounds N]
                                 [--rows ${ROWS.join(',')}] [--blob-mb N] [--remove-baseline]
                                 [--attach-proxy 'perf record -g -p {pid} -o {out}.data']`;

export function parseBenchArgs(argv: string[]): BenchOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        baseline: { type: 'string' },
        'candidate-dir': { type: 'string' },
        rounds: { type: 'string', default: '3' },
        rows: { type: 'string', default: ROWS.join(',') },
        'blob-mb': { type: 'string', default: '512' },
        'remove-baseline': { type: 'boolean', default: false },
        'attach-proxy': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    throw new DatapathBenchError(`${(err as Error).message}\n${USAGE}`);
  }
  const rows = values.rows
    .split(',')
    .map((r) => r.trim())
    .filter(Boolean);
  const unknown = rows.filter((r) => !(ROWS as readonly string[]).includes(r));
  if (unknown.length > 0 || rows.length === 0)
    throw new DatapathBenchError(`unknown rows: ${unknown.join(',') || '(none given)'}; known: ${ROWS.join(',')}`);
  return {
    baseline: values.baseline,
    candidateDir: values['candidate-dir'],
    rounds: positiveInt(values.rounds, '--rounds'),
    rows: ROWS.filter((r) => rows.includes(r)),
    blobMb: positiveInt(values['blob-mb'], '--blob-mb'),
    removeBaseline: values['remove-baseline'],
    attachProxy: attachCommand(values['attach-proxy']),
    help: values.help,
  };
}

/** The --attach-proxy command split on spaces (no shell); it must name the proxy with {pid}. */
function attachCommand(text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  const argv = text.split(' ').filter(Boolean);
  if (argv.length === 0 || !argv.some((a) => a.includes('{pid}')))
    throw new DatapathBenchError(`--attach-proxy wants a command naming the proxy's {pid}, got "${text}"`);
  return argv;
}

function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new DatapathBenchError(`${flag} wants a positive integer, got "${text}"`);
  return n;
}

/**
 * utime + stime (clock ticks) from a /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat line. The
 * command name is parenthesised and may hold spaces and ')', so fields are counted from the last ')'.
 */
export function parseStatTicks(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the name, field 3 (state) is index 0: utime (14) and stime (15) are indexes 11 and 12.
  const ticks = Number(fields[11]) + Number(fields[12]);
  if (!Number.isFinite(ticks)) throw new DatapathBenchError(`not a /proc stat line: ${stat.slice(0, 80)}`);
  return ticks;
}

/** VmRSS in bytes from /proc/<pid>/status text; 0 when absent (a zombie has none). */
export function parseVmRss(status: string): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

/**
 * Sum of every sample of `name` (all label sets, or those whose labels contain `labels`, e.g.
 * `kind="major"`) in a Prometheus text exposition; 0 when absent.
 */
export function metricSum(text: string, name: string, labels?: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== ' ' && line[name.length] !== '{')) continue;
    if (labels !== undefined && !line.slice(name.length, line.lastIndexOf(' ')).includes(labels)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
  }
  return sum;
}

export function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** One measured transfer: a row of one build in one round, with its named figures. */
export interface Sample {
  row: RowName;
  build: BuildName;
  round: number;
  values: Record<string, number>;
  error?: string;
}

/** A line of the summary table: which figure of which row, and how to print it. */
export interface Metric {
  row: RowName;
  key: string;
  label: string;
  digits: number;
}

export const METRICS: Metric[] = [
  { row: 'agent-warm', key: 'cpuMsPerMB', label: 'agent CPU ms/MB', digits: 2 },
  { row: 'agent-warm', key: 'mainMsPerMB', label: 'agent main-thread ms/MB', digits: 2 },
  { row: 'agent-warm', key: 'tailMsPerMB', label: 'agent CPU after last byte ms/MB', digits: 2 },
  { row: 'agent-warm', key: 'mbPerS', label: 'MB/s', digits: 0 },
  { row: 'agent-warm', key: 'peakRssMB', label: 'agent peak RSS MB', digits: 0 },
  { row: 'proxy-seed', key: 'cpuMsPerMB', label: 'proxy CPU ms/MB', digits: 2 },
  { row: 'proxy-seed', key: 'mainMsPerMB', label: 'proxy main-thread ms/MB', digits: 2 },
  { row: 'agents-3', key: 'cpuMsPerMB', label: 'Σ agents CPU ms/MB delivered', digits: 2 },
  { row: 'agents-3', key: 'mainMsPerMB', label: 'Σ agents main-thread ms/MB', digits: 2 },
  { row: 'agents-3', key: 'tailMsPerMB', label: 'Σ agents CPU after last byte ms/MB', digits: 2 },
  { row: 'agents-3', key: 'mbPerS', label: 'MB/s delivered (all 3)', digits: 0 },
  { row: 'agent-origin', key: 'cpuMsPerMB', label: 'agent CPU ms/MB', digits: 2 },
  { row: 'agent-origin', key: 'mainMsPerMB', label: 'agent main-thread ms/MB', digits: 2 },
  { row: 'agent-origin', key: 'tailMsPerMB', label: 'agent CPU after last byte ms/MB', digits: 2 },
  { row: 'agent-origin', key: 'mbPerS', label: 'MB/s', digits: 0 },
  { row: 'agent-origin', key: 'peakRssMB', label: 'agent peak RSS MB', digits: 0 },
  { row: 'agent-origin', key: 'wallToDirect', label: 'wall ÷ direct', digits: 2 },
  { row: 'proxy-cold', key: 'cpuMsPerMB', label: 'proxy CPU ms/MB', digits: 2 },
  { row: 'proxy-cold', key: 'mainMsPerMB', label: 'proxy main-thread ms/MB', digits: 2 },
  { row: 'proxy-cold', key: 'proxyPeakRssMB', label: 'proxy peak RSS MB', digits: 0 },
  { row: 'proxy-cold', key: 'relayMB', label: 'proxy relay MB (served_total)', digits: 0 },
  { row: 'proxy-cold', key: 'swarmUpMB', label: 'proxy BitTorrent upload MB', digits: 0 },
  { row: 'proxy-cold', key: 'agentDiscardedMB', label: 'agent discarded piece MB', digits: 0 },
  { row: 'proxy-cold', key: 'proxyMajorGcs', label: 'proxy major GCs', digits: 0 },
  { row: 'proxy-cold', key: 'proxyHeapMB', label: 'proxy heap used MB after', digits: 0 },
  { row: 'proxy-cold', key: 'agentCpuMsPerMB', label: 'agent CPU ms/MB (same pull)', digits: 2 },
  { row: 'proxy-cold', key: 'mbPerS', label: 'MB/s (client)', digits: 0 },
  { row: 'proxy-cold', key: 'wallToDirect', label: 'wall ÷ direct', digits: 2 },
  { row: 'direct', key: 'mbPerS', label: 'curl ← docker-registry MB/s', digits: 0 },
  { row: 'direct', key: 'wallS', label: 'wall s', digits: 2 },
  { row: 'direct', key: 'registryCpuMsPerMB', label: 'docker-registry CPU ms/MB', digits: 2 },
];

export interface SummaryLine {
  row: RowName;
  metric: string;
  key: string;
  baseline?: number;
  candidate?: number;
  /** candidate ÷ baseline medians. */
  ratio?: number;
  /** Rounds that produced the figure, per build. */
  n: Partial<Record<BuildName, number>>;
}

/** Medians per build of every figure of the selected rows; failed samples do not count. */
export function summarize(samples: Sample[], rows: RowName[]): SummaryLine[] {
  return METRICS.filter((m) => rows.includes(m.row)).map((m) => {
    const line: SummaryLine = { row: m.row, metric: m.label, key: m.key, n: {} };
    for (const build of ['baseline', 'candidate'] as const) {
      const xs = samples
        .filter((s) => s.row === m.row && s.build === build && !s.error && Number.isFinite(s.values[m.key]))
        .map((s) => s.values[m.key]);
      if (xs.length === 0) continue;
      line[build] = median(xs);
      line.n[build] = xs.length;
    }
    if (line.baseline !== undefined && line.candidate !== undefined && line.baseline !== 0) line.ratio = line.candidate / line.baseline;
    return line;
  });
}

/** The summary as a Markdown table (baseline columns only when a baseline ran). */
export function formatTable(lines: SummaryLine[], withBaseline: boolean): string {
  const digitsOf = (l: SummaryLine) => METRICS.find((m) => m.row === l.row && m.key === l.key)?.digits ?? 2;
  const num = (x: number | undefined, d: number) => (x === undefined ? '–' : x.toFixed(d));
  const head = withBaseline ? ['row', 'figure', 'baseline median', 'candidate median', 'ratio'] : ['row', 'figure', 'median'];
  const body = lines.map((l) => {
    const d = digitsOf(l);
    return withBaseline
      ? [l.row, l.metric, num(l.baseline, d), num(l.candidate, d), l.ratio === undefined ? '–' : `${l.ratio.toFixed(2)}×`]
      : [l.row, l.metric, num(l.candidate, d)];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const fmt = (cells: string[]) => `| ${cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
  return [fmt(head), `|${widths.map((w, i) => (i < 2 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...body.map(fmt)].join(
    '\n',
  );
}
