import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, runCli, tempDir, writeConfig } from '../support/app-process.js';

describe('bin/p2p', () => {
  it('--help lists the apps', async () => {
    const { code, stdout } = await runCli(['--help']);
    expect(code).toBe(0);
    for (const app of ['agent', 'proxy', 'tracker']) expect(stdout).toContain(app);
  });

  it.each([
    ['agent', ['registry', 'dataDir', 'p2pPort', 'downloadRate', 'uploadRate', 'trackers', 'proxies', 'adminTokenFile', 'swarmTokenFile']],
    ['proxy', ['registry', 'dataDir', 'p2pPort', 'uploadRate', 'originRate', 'trackers']],
    ['tracker', ['announceRate', 'port', 'host']],
  ])('%s --help lists every contract key with its env variable and default', async (app, keys) => {
    const { code, stdout } = await runCli([app, '--help']);
    expect(code).toBe(0);
    for (const key of keys) expect(stdout).toMatch(new RegExp(`^  ${key}  \\(.*env P2P_[A-Z0-9_]+\\)\\n      default: `, 'm'));
  });

  it('exits non-zero naming the key for a bad value in the file', async () => {
    const dir = await tempDir();
    const file = await writeConfig(dir, { downloadRate: 'banana', dataDir: join(dir, 'd') });
    const { code, stderr } = await runCli(['agent', '--config', file]);
    expect(code).not.toBe(0);
    expect(stderr).toContain('downloadRate');
    expect(stderr).toContain('banana');
  });

  it('names every bad key at once, unknown keys included', async () => {
    const dir = await tempDir();
    const file = await writeConfig(dir, { port: 70000, originRate: '5 bananas', dataDri: '/x' });
    const { code, stderr } = await runCli(['proxy', '--config', file]);
    expect(code).toBe(1);
    expect(stderr).toContain('port');
    expect(stderr).toContain('originRate');
    expect(stderr).toMatch(/dataDri: unknown key \(did you mean dataDir\?\)/);
  });

  it('applies P2P_* environment overrides and validates them too', async () => {
    const { code, stderr } = await runCli(['tracker'], { P2P_ANNOUNCE_RATE: 'lots' });
    expect(code).toBe(1);
    expect(stderr).toContain('announceRate');
  });

  it('refuses a file that is not YAML or not a mapping', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'list.yaml'), '- a\n- b\n');
    const res = await runCli(['tracker', '--config', join(dir, 'list.yaml')]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('mapping');
    const missing = await runCli(['tracker', '--config', join(dir, 'nope.yaml')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('cannot read');
  });

  it('refuses an unknown app with usage', async () => {
    const { code, stderr } = await runCli(['gateway']);
    expect(code).toBe(2);
    expect(stderr).toContain('unknown app');
  });

  it('docs/config.md is the generated reference (run npm run docs:config after changing a key)', async () => {
    const { stdout } = await runCli(['config-docs']);
    expect(await readFile(join(ROOT, 'docs/config.md'), 'utf8')).toBe(stdout);
  });
});

describe('p2p all (npm start)', () => {
  it('runs tracker, proxy and agent on their default ports and stops them all on SIGTERM', async () => {
    const { spawn } = await import('node:child_process');
    const { request } = await import('undici');
    const cwd = await tempDir();
    const proc = spawn(process.execPath, [join(ROOT, 'bin/p2p'), 'all'], {
      cwd,
      env: { ...process.env, P2P_LOG_FORMAT: 'json', P2P_HOST: '127.0.0.1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((res) => proc.on('exit', (code) => res(code)));
    try {
      const ports = { agent: 5004, proxy: 5005, tracker: 6969 };
      for (let i = 0; i < 1200 && (out.match(/listening on/g) ?? []).length < 3; i++) await new Promise((r) => setTimeout(r, 50));
      expect((out.match(/listening on/g) ?? []).length, out).toBe(3);
      for (const [app, port] of Object.entries(ports)) {
        const res = await request(`http://127.0.0.1:${port}/healthz`);
        await res.body.text();
        expect(res.statusCode, app).toBe(200);
      }
      const metrics = await request('http://127.0.0.1:5004/metrics');
      expect(await metrics.body.text()).toContain('app="agent"');
    } finally {
      proc.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});
