import { statfsSync } from 'node:fs';
import { writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IsArray, IsInt, IsString, IsUrl, Max, Min } from 'class-validator';
import { describe, expect, it } from 'vitest';
import { BaseAppConfig, HTTP_URL } from './base.config.js';
import { ConfigKey, configKeys, envName } from './config-key.decorator.js';
import { ConfigError, configOrigin, loadConfig } from './config-loader.js';
import { IsDiskAmount, IsDuration, IsRate } from './unit.validators.js';

/** One key of every kind the loader handles (the apps' real keys live in their libs). */
class SampleConfig extends BaseAppConfig {
  @ConfigKey({ kind: 'url', doc: 'test url' })
  @IsUrl(HTTP_URL)
  registry = 'https://registry.example';

  @ConfigKey({ kind: 'list', doc: 'test url list', defaultText: '[]' })
  @IsArray()
  @IsUrl(HTTP_URL, { each: true })
  registries: string[] = [];

  @ConfigKey({ kind: 'list', doc: 'test list', defaultText: '[]' })
  @IsArray()
  @IsString({ each: true })
  trackers: string[] = [];

  @ConfigKey({ kind: 'string', doc: 'test data dir' })
  @IsString()
  dataDir = '';

  @ConfigKey({ kind: 'disk', doc: 'test floor', defaultText: '20%' })
  @IsDiskAmount()
  minFreeSpace: number = '20%' as unknown as number;

  @ConfigKey({ kind: 'disk', doc: 'test quota', defaultText: '10%' })
  @IsDiskAmount()
  cacheMaxBytes: number = '10%' as unknown as number;

  @ConfigKey({ kind: 'duration', doc: 'test duration' })
  @IsDuration()
  seedTtl = 3600;

  @ConfigKey({ kind: 'duration', doc: 'renamed', formerly: 'upstreamConnectTimeout' })
  @IsDuration()
  originConnectTimeout = 10;

  @ConfigKey({ kind: 'duration', doc: 'renamed', formerly: 'upstreamHeadersTimeout' })
  @IsDuration()
  originHeadersTimeout = 30;

  @ConfigKey({ kind: 'number', doc: 'test number' })
  @IsInt()
  @Min(0)
  @Max(65535)
  p2pPort = 0;

  @ConfigKey({ kind: 'rate', doc: 'test rate' })
  @IsRate()
  downloadRate = 0;

  @ConfigKey({ kind: 'string', doc: 'test string' })
  @IsString()
  label = 'x';
}

async function yamlFile(text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cfg-'));
  const file = join(dir, 'c.yaml');
  await writeFile(file, text);
  return file;
}

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe(loadConfig.name, () => {
  it('returns defaults when given nothing', () => {
    const config = loadConfig(SampleConfig, { env: {} });
    expect(config.downloadRate).toBe(0);
    // Disk-safe defaults, relative to the filesystem (here the one holding the working directory).
    const fs = statfsSync('.');
    expect(config.cacheMaxBytes).toBe(Math.round(0.1 * fs.blocks * fs.bsize));
    expect(config.minFreeSpace).toBe(Math.round(0.2 * fs.blocks * fs.bsize));
    expect(config.registries).toEqual([]);
  });

  it('normalises unit strings from YAML into numbers', async () => {
    const file = await yamlFile('downloadRate: 100MB\ncacheMaxBytes: 2GiB\nseedTtl: 5m\nminFreeSpace: 1048576\n');
    const config = loadConfig(SampleConfig, { file, env: {} });
    expect(config.downloadRate).toBe(100_000_000);
    expect(config.cacheMaxBytes).toBe(2 * 2 ** 30);
    expect(config.seedTtl).toBe(300);
    expect(config.minFreeSpace).toBe(1048576);
  });

  it('resolves disk percentages against the filesystem of dataDir, even before the dir exists', async () => {
    const base = await mkdtemp(join(tmpdir(), 'cfg-disk-'));
    const file = await yamlFile(`dataDir: ${join(base, 'not', 'yet')}\nminFreeSpace: "25%"\ncacheMaxBytes: "0%"\n`);
    const config = loadConfig(SampleConfig, { file, env: {} });
    const fs = statfsSync(base);
    expect(config.minFreeSpace).toBe(Math.round(0.25 * fs.blocks * fs.bsize));
    expect(config.cacheMaxBytes).toBe(0);
    expect(problemsOf(() => loadConfig(SampleConfig, { env: { P2P_MIN_FREE_SPACE: '120%' } })).join()).toMatch(
      /minFreeSpace must be a size .* or a percentage/,
    );
  });

  it('reads a renamed key under its earlier name, with a note; both names at once is an error', async () => {
    const file = await yamlFile('upstreamHeadersTimeout: 7\n');
    const config = loadConfig(SampleConfig, { file, env: { P2P_UPSTREAM_CONNECT_TIMEOUT: '3' } });
    expect([config.originHeadersTimeout, config.originConnectTimeout]).toEqual([7, 3]);
    const notes = configOrigin(config)?.notes.join('\n');
    expect(notes).toMatch(/key upstreamHeadersTimeout is now originHeadersTimeout/);
    expect(notes).toMatch(/variable P2P_UPSTREAM_CONNECT_TIMEOUT is now P2P_ORIGIN_CONNECT_TIMEOUT/);
    const both = await yamlFile('upstreamHeadersTimeout: 7\noriginHeadersTimeout: 8\n');
    expect(problemsOf(() => loadConfig(SampleConfig, { file: both, env: {} })).join()).toMatch(
      /upstreamHeadersTimeout: the earlier name of originHeadersTimeout/,
    );
  });

  it('lets P2P_* variables override the file, lists split on commas', async () => {
    const file = await yamlFile('downloadRate: 1MB\nlabel: file\n');
    const config = loadConfig(SampleConfig, {
      file,
      env: {
        P2P_DOWNLOAD_RATE: '20MiB/s',
        P2P_LABEL: 'env',
        P2P_TRACKERS: 'http://a:1/announce, http://b:2/announce',
        P2P_P2P_PORT: '7000',
      },
    });
    expect(config.downloadRate).toBe(20 * 2 ** 20);
    expect(config.label).toBe('env');
    expect(config.trackers).toEqual(['http://a:1/announce', 'http://b:2/announce']);
    expect(config.p2pPort).toBe(7000);
  });

  it('names every bad key, including unknown ones with a suggestion', async () => {
    const file = await yamlFile('downloadRate: banana\nport: -1\nregistry: not a url\nlabl: y\n');
    const problems = problemsOf(() => loadConfig(SampleConfig, { file, env: {} }));
    expect(problems.find((p) => p.startsWith('downloadRate'))).toContain('banana');
    expect(problems.some((p) => p.startsWith('port'))).toBe(true);
    expect(problems.some((p) => p.startsWith('registry'))).toBe(true);
    expect(problems).toContain('labl: unknown key (did you mean label?)');
  });

  it('rejects env values of the wrong kind', () => {
    const problems = problemsOf(() => loadConfig(SampleConfig, { env: { P2P_PORT: 'eighty' } }));
    expect(problems.some((p) => p.startsWith('port'))).toBe(true);
  });

  it('rejects YAML that is not a mapping and files that cannot be read', async () => {
    expect(problemsOf(() => loadConfig(SampleConfig, { file: '/nonexistent/c.yaml', env: {} }))[0]).toContain('cannot read');
    const list = await yamlFile('- 1\n- 2\n');
    expect(problemsOf(() => loadConfig(SampleConfig, { file: list, env: {} }))[0]).toContain('mapping');
    const broken = await yamlFile('a: [unclosed\n');
    expect(problemsOf(() => loadConfig(SampleConfig, { file: broken, env: {} }))[0]).toContain('not valid YAML');
  });

  it('treats an empty file as all defaults', async () => {
    const file = await yamlFile('');
    expect(loadConfig(SampleConfig, { file, env: {} }).label).toBe('x');
  });
});

describe(configKeys.name, () => {
  it('lists base keys first and each key once', () => {
    const keys = configKeys(SampleConfig).map((k) => k.key);
    expect(keys[0]).toBe('port');
    expect(keys).toContain('downloadRate');
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('derives env names in upper snake case', () => {
    expect(envName('downloadRate')).toBe('P2P_DOWNLOAD_RATE');
    expect(envName('p2pPort')).toBe('P2P_P2P_PORT');
  });

  it("records how it loaded the config: file hash, env overrides and each key's source", async () => {
    const file = await yamlFile('downloadRate: 100MB\nlabel: y\n');
    const config = loadConfig(SampleConfig, { file, env: { P2P_LABEL: 'z', UNRELATED: 'secret' } });
    const origin = configOrigin(config)!;
    expect(origin.file).toBe(file);
    expect(origin.env).toEqual({ P2P_LABEL: 'z' });
    expect(origin.fileHash).toMatch(/^[0-9a-f]{64}$/);
    expect(origin.sources).toMatchObject({ downloadRate: 'file', label: 'env', cacheMaxBytes: 'default' });
  });

  it('validates given fileText instead of reading the file again', async () => {
    const file = await yamlFile('downloadRate: 100MB\n');
    expect(loadConfig(SampleConfig, { file, env: {}, fileText: 'downloadRate: 1MB\n' }).downloadRate).toBe(1_000_000);
  });
});
