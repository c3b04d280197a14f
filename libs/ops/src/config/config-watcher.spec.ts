import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger } from '@nestjs/common';
import { IsString } from 'class-validator';
import { afterEach, describe, expect, it } from 'vitest';
import { ThrottleService } from '../throttle/throttle.service.js';
import { BaseAppConfig } from './base.config.js';
import { ConfigKey } from './config-key.decorator.js';
import { loadConfig } from './config-loader.js';
import { ConfigWatcher, type ReloadResult } from './config-watcher.js';
import { IsRate } from './unit.validators.js';

class SampleConfig extends BaseAppConfig {
  @ConfigKey({ kind: 'rate', doc: 'test rate' })
  @IsRate()
  downloadRate = 0;

  @ConfigKey({ kind: 'rate', doc: 'test rate' })
  @IsRate()
  uploadRate = 0;

  @ConfigKey({ kind: 'string', doc: 'test string' })
  @IsString()
  label = 'x';
}

/** Writes and swaps a config dir exactly as kubelet's AtomicWriter updates a ConfigMap volume. */
class KubeletVolume {
  private generation = 0;
  constructor(readonly dir: string) {}
  get file(): string {
    return join(this.dir, 'config.yaml');
  }
  async init(text: string): Promise<void> {
    const ts = await this.writeTimestamped(text);
    await symlink(ts, join(this.dir, '..data'));
    await symlink('..data/config.yaml', this.file);
  }
  async update(text: string): Promise<void> {
    const old = `..2026_11_30_05_00_0${this.generation}.000000001`;
    const ts = await this.writeTimestamped(text);
    await symlink(ts, join(this.dir, '..data_tmp'));
    await rename(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
    await rm(join(this.dir, old), { recursive: true });
  }
  private async writeTimestamped(text: string): Promise<string> {
    const ts = `..2026_11_30_05_00_0${++this.generation}.000000001`;
    await mkdir(join(this.dir, ts));
    await writeFile(join(this.dir, ts, 'config.yaml'), text);
    return ts;
  }
}

/** Keeps each line as `<level> <msg and fields as JSON>` (the watcher logs objects: msg plus fields). */
class CapturingLogger extends Logger {
  readonly lines: string[] = [];
  override log(message: unknown): void {
    this.lines.push(`log ${asText(message)}`);
  }
  override warn(message: unknown): void {
    this.lines.push(`warn ${asText(message)}`);
  }
  override error(message: unknown): void {
    this.lines.push(`error ${asText(message)}`);
  }
}

function asText(message: unknown): string {
  return typeof message === 'string'
    ? message
    : JSON.stringify(message, (_k, v: unknown) => (v instanceof Error ? `${v.name}: ${v.message}` : v));
}

describe(ConfigWatcher.name, () => {
  const watchers: ConfigWatcher<SampleConfig>[] = [];
  afterEach(() => watchers.splice(0).forEach((w) => w.stop()));

  async function setup(initial: string, options: { env?: NodeJS.ProcessEnv; kubelet?: boolean; pollOnly?: boolean } = {}) {
    const dir = await mkdtemp(join(tmpdir(), 'cfg-watch-'));
    const volume = new KubeletVolume(dir);
    const file = options.kubelet === false ? join(dir, 'config.yaml') : volume.file;
    if (options.kubelet === false) await writeFile(file, initial);
    else await volume.init(initial);
    const running = loadConfig(SampleConfig, { file, env: options.env ?? {} });
    const throttle = new ThrottleService({
      downloadRate: { unit: 'bytes/s', initial: running.downloadRate, source: 'file' },
      uploadRate: { unit: 'bytes/s', initial: running.uploadRate, source: 'file' },
    });
    const results: ReloadResult[] = [];
    const logger = new CapturingLogger();
    const { configOrigin } = await import('./config-loader.js');
    const watcher = new ConfigWatcher({
      running,
      origin: { ...configOrigin(running)!, file },
      liveKeys: throttle.names(),
      apply: (key, value) => throttle.set(key, value as number, 'file'),
      onResult: (r) => results.push(r),
      pollMs: options.pollOnly ? 100 : 60_000,
      watchDirectory: !options.pollOnly,
      settleMs: 20,
      logger,
    });
    watchers.push(watcher);
    return { dir, file, volume, throttle, results, logger, watcher };
  }

  it('applies a changed rate after a kubelet-style ConfigMap swap (..data symlink renamed over)', async () => {
    const t = await setup('downloadRate: 2MB\nuploadRate: 1MB\n');
    await t.watcher.check();
    expect(t.results).toEqual([]); // unchanged content: nothing to do
    await t.volume.update('downloadRate: 8MB\nuploadRate: 1MB\n');
    await t.watcher.check();
    expect(t.throttle.snapshot()).toEqual({ downloadRate: 8_000_000, uploadRate: 1_000_000 });
    expect(t.throttle.sources().downloadRate.source).toBe('file');
    expect(t.results).toEqual(['applied']);
  });

  it('notices the swap by itself through the directory watch (no poll)', async () => {
    const t = await setup('downloadRate: 2MB\n');
    t.watcher.start();
    await t.volume.update('downloadRate: 5MB\n');
    for (let i = 0; i < 200 && t.throttle.get('downloadRate') !== 5_000_000; i++) await new Promise((r) => setTimeout(r, 25));
    expect(t.throttle.get('downloadRate')).toBe(5_000_000);
  });

  it('without the directory watch, the poll still notices the swap', async () => {
    const t = await setup('downloadRate: 2MB\n', { pollOnly: true });
    t.watcher.start();
    await t.volume.update('downloadRate: 6MB\n');
    for (let i = 0; i < 200 && t.throttle.get('downloadRate') !== 6_000_000; i++) await new Promise((r) => setTimeout(r, 25));
    expect(t.throttle.get('downloadRate')).toBe(6_000_000);
  });

  it('notices a plain in-place edit and an editor-style rename-over by itself', async () => {
    const t = await setup('downloadRate: 2MB\n', { kubelet: false });
    t.watcher.start();
    const until = async (rate: number) => {
      for (let i = 0; i < 200 && t.throttle.get('downloadRate') !== rate; i++) await new Promise((r) => setTimeout(r, 25));
      expect(t.throttle.get('downloadRate')).toBe(rate);
    };
    await writeFile(t.file, 'downloadRate: 3MB\n');
    await until(3_000_000);
    await writeFile(join(t.dir, '.config.yaml.swp'), 'downloadRate: 4MB\n');
    await rename(join(t.dir, '.config.yaml.swp'), t.file);
    await until(4_000_000);
  });

  it('ignores a broken edit (bad YAML, bad value, unknown key) and keeps the running values', async () => {
    const t = await setup('downloadRate: 2MB\n');
    for (const broken of ['downloadRate: [2MB\n', 'downloadRate: fast\n', 'downloadRate: 9MB\ndownloadRat: 1\n']) {
      await t.volume.update(broken);
      await t.watcher.check();
    }
    expect(t.throttle.get('downloadRate')).toBe(2_000_000);
    expect(t.results).toEqual(['rejected', 'rejected', 'rejected']);
    expect(t.logger.lines.filter((l) => l.startsWith('warn'))).toHaveLength(3);
    expect(t.logger.lines.join('\n')).toMatch(/not valid YAML/);
    expect(t.logger.lines.join('\n')).toMatch(/downloadRat: unknown key \(did you mean downloadRate\?\)/);
    // Fixed afterwards: applies.
    await t.volume.update('downloadRate: 3MB\n');
    await t.watcher.check();
    expect(t.throttle.get('downloadRate')).toBe(3_000_000);
  });

  it('an apply that throws is logged and counted, and the watcher keeps working', async () => {
    const t = await setup('downloadRate: 2MB\n');
    let fail = true;
    const logger = new CapturingLogger();
    const { configOrigin } = await import('./config-loader.js');
    const results: ReloadResult[] = [];
    const running = loadConfig(SampleConfig, { file: t.file, env: {} });
    const watcher = new ConfigWatcher({
      running,
      origin: { ...configOrigin(running)!, file: t.file },
      liveKeys: ['downloadRate'],
      apply: (key, value) => {
        if (fail) throw new Error('boom');
        t.throttle.set(key, value as number, 'file');
      },
      onResult: (r) => results.push(r),
      logger,
    });
    watchers.push(watcher);
    await t.volume.update('downloadRate: 3MB\n');
    await watcher.check();
    expect(results).toEqual(['rejected']);
    expect(logger.lines.join('\n')).toMatch(/error .*reloading the config file failed; the running values stay.*Error: boom/);
    fail = false;
    await t.volume.update('downloadRate: 4MB\n');
    await watcher.check();
    expect(t.throttle.get('downloadRate')).toBe(4_000_000);
  });

  it('a deleted file is reported once and changes nothing', async () => {
    const t = await setup('downloadRate: 2MB\n', { kubelet: false });
    await rm(t.file);
    await t.watcher.check();
    await t.watcher.check();
    expect(t.results).toEqual(['rejected']);
    expect(t.throttle.get('downloadRate')).toBe(2_000_000);
  });

  it('the later change wins: a file edit overrides a PATCH only for the keys it changes', async () => {
    const t = await setup('downloadRate: 2MB\nuploadRate: 1MB\n');
    t.throttle.set('downloadRate', 7_000_000, 'patch');
    t.throttle.set('uploadRate', 9_000_000, 'patch');
    await t.volume.update('downloadRate: 2MB\nuploadRate: 3MB\n');
    await t.watcher.check();
    expect(t.throttle.snapshot()).toEqual({ downloadRate: 7_000_000, uploadRate: 3_000_000 });
    expect(t.throttle.sources().downloadRate.source).toBe('patch');
    expect(t.throttle.sources().uploadRate.source).toBe('file');
  });

  it('names other changed keys once as needing a restart and leaves their running values', async () => {
    const t = await setup('downloadRate: 2MB\nlabel: a\n');
    await t.volume.update('downloadRate: 4MB\nlabel: b\nlogLevel: debug\n');
    await t.watcher.check();
    expect(t.throttle.get('downloadRate')).toBe(4_000_000);
    expect(t.results).toEqual(['restart_needed']);
    const warnings = t.logger.lines.filter((l) => l.startsWith('warn'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/logLevel, label changed: needs a restart/);
    expect(warnings[0]).not.toContain('debug'); // names, not values
  });

  it('a P2P_* variable keeps winning over file edits of its key', async () => {
    const t = await setup('downloadRate: 2MB\n', { env: { P2P_DOWNLOAD_RATE: '1000' } });
    expect(t.throttle.get('downloadRate')).toBe(1000);
    await t.volume.update('downloadRate: 8MB\n');
    await t.watcher.check();
    expect(t.throttle.get('downloadRate')).toBe(1000);
    expect(t.results).toEqual(['applied']);
  });
});
