import { describe, expect, it } from 'vitest';
import {
  DatapathBenchError,
  formatTable,
  median,
  metricSum,
  parseBenchArgs,
  parseStatTicks,
  parseVmRss,
  ROWS,
  summarize,
  type Sample,
} from './datapath-stats.js';

describe('datapath-stats', () => {
  it('reads utime+stime after the last ")" even when the command name holds spaces and parentheses', () => {
    const fields = ['S', '1', '2', '3', '0', '-1', '4194560', '100', '0', '0', '0', '1234', '567', '0', '0', '20', '0', '11'];
    expect(parseStatTicks(`4242 (node) ${fields.join(' ')}`)).toBe(1801);
    expect(parseStatTicks(`4242 (we ird) (x)) ${fields.join(' ')}`)).toBe(1801);
    expect(() => parseStatTicks('garbage')).toThrow(DatapathBenchError);
  });

  it('reads VmRSS in bytes, 0 when the process has none', () => {
    expect(parseVmRss('Name:\tnode\nVmHWM:\t  200000 kB\nVmRSS:\t  123456 kB\n')).toBe(123456 * 1024);
    expect(parseVmRss('Name:\tnode\nState:\tZ (zombie)\n')).toBe(0);
  });

  it('sums a counter over its label sets, not counters whose name it prefixes', () => {
    const text = [
      '# HELP p2p_blob_bytes_served_total x',
      '# TYPE p2p_blob_bytes_served_total counter',
      'p2p_blob_bytes_served_total{cache="hit"} 100',
      'p2p_blob_bytes_served_total{cache="miss"} 23',
      'p2p_blob_bytes_served_total_other 5',
      'p2p_swarm_uploaded_bytes_total 7',
    ].join('\n');
    expect(metricSum(text, 'p2p_blob_bytes_served_total')).toBe(123);
    expect(metricSum(text, 'p2p_swarm_uploaded_bytes_total')).toBe(7);
    expect(metricSum(text, 'p2p_nothing_total')).toBe(0);
    expect(metricSum(text, 'p2p_blob_bytes_served_total', 'cache="miss"')).toBe(23);
  });

  it('takes the median of odd and even counts', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it('parses the command line with defaults, keeps the row order canonical and rejects unknown rows', () => {
    expect(parseBenchArgs([])).toMatchObject({ rounds: 3, blobMb: 512, rows: [...ROWS], baseline: undefined, removeBaseline: false });
    const o = parseBenchArgs([
      '--baseline',
      '63e8147',
      '--rows',
      'direct,agent-warm',
      '--rounds',
      '1',
      '--blob-mb',
      '128',
      '--candidate-dir',
      '/tmp/x',
    ]);
    expect(o).toMatchObject({ baseline: '63e8147', rows: ['agent-warm', 'direct'], rounds: 1, blobMb: 128, candidateDir: '/tmp/x' });
    expect(() => parseBenchArgs(['--rows', 'agent-warm,bogus'])).toThrow(/unknown rows: bogus/);
    expect(() => parseBenchArgs(['--rounds', '0'])).toThrow(/positive integer/);
    expect(() => parseBenchArgs(['--nope'])).toThrow(DatapathBenchError);
    expect(parseBenchArgs(['--attach-proxy', 'perf record  -g -p {pid} -o {out}.data']).attachProxy).toEqual([
      'perf',
      'record',
      '-g',
      '-p',
      '{pid}',
      '-o',
      '{out}.data',
    ]);
    expect(() => parseBenchArgs(['--attach-proxy', 'perf record -g'])).toThrow(/\{pid\}/);
  });

  it('summarizes medians per build, skips failed samples and prints the ratio candidate ÷ baseline', () => {
    const s = (build: 'baseline' | 'candidate', round: number, cpu: number, error?: string): Sample => ({
      row: 'agent-warm',
      build,
      round,
      values: error ? {} : { cpuMsPerMB: cpu },
      error,
    });
    const samples = [
      s('baseline', 1, 12),
      s('baseline', 2, 14),
      s('baseline', 3, 13),
      s('candidate', 1, 6),
      s('candidate', 2, 0, 'curl failed'),
      s('candidate', 3, 4),
    ];
    const [line] = summarize(samples, ['agent-warm']);
    expect(line).toMatchObject({ row: 'agent-warm', key: 'cpuMsPerMB', baseline: 13, candidate: 5, n: { baseline: 3, candidate: 2 } });
    expect(line.ratio).toBeCloseTo(5 / 13, 9);
    const table = formatTable(summarize(samples, ['agent-warm']), true);
    expect(table.split('\n')[0]).toMatch(/^\| row +\| figure +\| baseline median \| candidate median \| ratio \|$/);
    expect(table).toContain('13.00');
    expect(table).toContain('0.38×');
    expect(formatTable(summarize(samples, ['agent-warm']), false).split('\n')[0]).toMatch(/\| median \|$/);
  });
});
