import { execFile, spawn } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runCli, tempDir } from '../support/app-process.js';
import { APPS, renderInstalls, workloads } from './k8s-manifests.js';

const run = promisify(execFile);

interface Instruction {
  op: string;
  args: string;
}

/** Dockerfile → stages of instructions (continuations joined, comments dropped, ARG defaults applied). */
function parseDockerfile(text: string): Instruction[][] {
  const args = new Map<string, string>();
  const stages: Instruction[][] = [];
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  for (const line of lines) {
    const [, op, rest] = /^(\w+)\s+(.*)$/.exec(line) ?? [];
    const expanded = rest.replace(/\$\{(\w+)\}/g, (_, name: string) => args.get(name) ?? '');
    if (op === 'ARG' && stages.length === 0) {
      const [name, value = ''] = rest.split('=');
      args.set(name, value);
      continue;
    }
    if (op === 'FROM') stages.push([]);
    stages.at(-1)?.push({ op, args: expanded });
  }
  return stages;
}

/** .dockerignore as Docker applies it: patterns from the context root, `*` within a path segment, `**` across. */
function dockerIgnored(patterns: string[], path: string): boolean {
  let ignored = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const pattern = (negate ? raw.slice(1) : raw).replace(/^\/+|\/+$/g, '');
    const re = new RegExp(
      `^${pattern
        .split('**')
        .map((p) =>
          p
            .replace(/[.+^${}()|[\]\\]/g, '\\$&')
            .replace(/\*/g, '[^/]*')
            .replace(/\?/g, '[^/]'),
        )
        .join('.*')}(/.*)?$`,
    );
    if (re.test(path)) ignored = !negate;
  }
  return ignored;
}

function jsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return jsFiles(path);
    return path.endsWith('.js') ? [path] : [];
  });
}

const IMPORT =
  /(?:^|[;\s])(?:import|export)\s[^'";]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^import\s+['"]([^'"]+)['"]/gm;

function importsOf(file: string): string[] {
  return [...readFileSync(file, 'utf8').matchAll(IMPORT)].map((m) => m[1] ?? m[2] ?? m[3]);
}

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  imports: Record<string, { default: string }>;
  overrides: Record<string, string>;
};
let stages: Instruction[][];
let ignore: string[];
let work: string | undefined;

beforeAll(() => {
  stages = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
  ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/**
 * The final stage's /app without Docker: the paths it copies, and node_modules as
 * `npm prune --omit=dev` leaves it (every lockfile entry not marked dev), copied rather than
 * linked so nothing resolves back into the repository's full node_modules.
 */
async function runtimeTree(copied: string[]): Promise<string> {
  work = await tempDir('p2p-k8s-image-');
  chmodSync(work, 0o755);
  const app = join(work, 'app');
  mkdirSync(app);
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  for (const path of copied.filter((p) => p !== 'node_modules'))
    cpSync(join(ROOT, path), join(app, path), { recursive: true, verbatimSymlinks: true });
  for (const [path, info] of Object.entries(lock.packages)) {
    if (!path || info.dev || path.split('node_modules/').length !== 2 || !existsSync(join(ROOT, path))) continue;
    cpSync(join(ROOT, path), join(app, path), { recursive: true, verbatimSymlinks: true });
  }
  return app;
}

describe('Dockerfile and .dockerignore (checked offline: no Docker engine here)', () => {
  it('builds in two stages from Node 22/24 slim', () => {
    expect(stages.length).toBe(2);
    for (const stage of stages) expect(stage[0].args).toMatch(/^node:(22|24)[\w.-]*-slim(\s+AS\s+\w+)?$/);
  });

  it('installs with the lockfile after the local override package is in place, then builds and drops dev dependencies', () => {
    const build = stages[0];
    const at = (pred: (i: Instruction) => boolean) => build.findIndex(pred);
    const ci = at((i) => i.op === 'RUN' && /\bnpm ci\b/.test(i.args));
    expect(ci).toBeGreaterThan(0);
    expect(build[ci].args).not.toMatch(/--omit=dev|--production/); // tsc is a dev dependency
    for (const [name, spec] of Object.entries(pkg.overrides).filter(([, s]) => s.startsWith('file:'))) {
      const dir = spec.slice('file:'.length).replace(/^\.\//, '');
      const copied = at(
        (i) =>
          i.op === 'COPY' &&
          i.args
            .split(/\s+/)
            .slice(0, -1)
            .some((src) => dir === src || dir.startsWith(`${src.replace(/\/$/, '')}/`)),
      );
      expect(copied, `override ${name} (${dir}) copied before npm ci`).toBeGreaterThanOrEqual(0);
      expect(copied).toBeLessThan(ci);
    }
    const lock = at((i) => i.op === 'COPY' && /package-lock\.json/.test(i.args));
    expect(lock).toBeGreaterThanOrEqual(0);
    expect(lock).toBeLessThan(ci);
    const buildRun = at((i) => i.op === 'RUN' && /npm run build/.test(i.args));
    expect(buildRun).toBeGreaterThan(ci);
    expect(build[buildRun].args).toMatch(/npm run build.*npm prune --omit=dev/);
  });

  it('copies from the context only files that exist and that .dockerignore lets through', () => {
    const sources = stages
      .flatMap((s) => s.filter((i) => i.op === 'COPY' && !i.args.startsWith('--from')))
      .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    expect(sources.length).toBeGreaterThan(0);
    for (const src of sources) {
      expect(existsSync(join(ROOT, src)), src).toBe(true);
      expect(dockerIgnored(ignore, src), `${src} is ignored`).toBe(false);
    }
    for (const secretOrBulk of [
      'node_modules',
      'dist',
      '.git',
      '.p2p-data',
      'test/support/app-process.ts',
      'k8s/kustomization.yaml',
      'k8s/config/agent.yaml',
    ]) {
      expect(dockerIgnored(ignore, secretOrBulk), secretOrBulk).toBe(true);
    }
  });

  it('runs as a numeric non-root user with `p2p` as the entrypoint', () => {
    const final = stages.at(-1)!;
    const user = final.filter((i) => i.op === 'USER').at(-1)?.args ?? '';
    expect(user).toMatch(/^[1-9]\d*(:\d+)?$/);
    expect(final.find((i) => i.op === 'ENTRYPOINT')?.args).toBe('["p2p"]');
    expect(final.some((i) => i.op === 'RUN' && /ln -s \/app\/bin\/p2p \/usr\/local\/bin\/p2p/.test(i.args))).toBe(true);
    expect(final.some((i) => i.op === 'ENV' && /NODE_ENV=production/.test(i.args))).toBe(true);
  });

  it('the runtime stage carries everything the compiled apps import, and only production dependencies are needed', () => {
    const final = stages.at(-1)!;
    const copied = final
      .filter((i) => i.op === 'COPY')
      .map((i) =>
        i.args
          .split(/\s+/)
          .at(-2)!
          .replace(/^\/app\//, ''),
      );
    expect(copied).toEqual(expect.arrayContaining(['package.json', 'packages', 'node_modules', 'dist', 'bin']));
    for (const [alias, target] of Object.entries(pkg.imports)) {
      expect(target.default, alias).toMatch(/^\.\/dist\//);
      expect(existsSync(join(ROOT, target.default)), `${alias} → ${target.default} (run npm run build first)`).toBe(true);
    }
    const files = [...jsFiles(join(ROOT, 'dist/apps')), ...jsFiles(join(ROOT, 'dist/libs')), join(ROOT, 'bin/p2p')];
    const missing = new Set<string>();
    for (const file of files) {
      for (const spec of importsOf(file)) {
        if (spec.startsWith('.')) {
          const target = relative(ROOT, resolve(dirname(file), spec));
          if (!/^(dist\/(apps|libs)\/|dist\/)/.test(target) || !existsSync(join(ROOT, target)))
            missing.add(`${relative(ROOT, file)} → ${spec}`);
          continue;
        }
        if (spec.startsWith('#') || spec.startsWith('node:') || builtinModules.includes(spec)) continue;
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
        if (!(name in pkg.dependencies)) missing.add(`${relative(ROOT, file)} → ${name} (not a production dependency)`);
      }
    }
    expect([...missing]).toEqual([]);
  });

  it('every app the manifests start is one the image’s CLI knows', async () => {
    const started = new Set<string>();
    for (const objects of (await renderInstalls()).values()) {
      for (const w of workloads(objects)) {
        const main = w.spec.template.spec.containers[0];
        if (main.command) continue; // helper pods run node directly
        started.add(main.args![0]);
        expect(main.args!.slice(1, 2)).toEqual(['--config']);
      }
    }
    expect([...started].sort()).toEqual([...APPS].sort());
    for (const app of started) {
      const { code, stdout } = await runCli([app, '--help']);
      expect(code, app).toBe(0);
      expect(stdout).toContain(`p2p ${app}:`);
    }
  });

  it('the final stage, emulated (its copies, production dependencies only, UID 1000): the apps start', async () => {
    const final = stages.at(-1)!;
    const copied = final
      .filter((i) => i.op === 'COPY')
      .map((i) =>
        i.args
          .split(/\s+/)
          .at(-2)!
          .replace(/^\/app\//, ''),
      );
    const [uid, gid = uid] = (final.filter((i) => i.op === 'USER').at(-1)?.args ?? '').split(':');
    const app = await runtimeTree(copied);
    expect(existsSync(join(app, 'node_modules/typescript')), 'dev dependency left in').toBe(false);
    const asUser = [
      '--reuid',
      uid,
      '--regid',
      gid,
      '--clear-groups',
      '--inh-caps',
      '-all',
      '--bounding-set',
      '-all',
      '--no-new-privs',
      '--',
      process.execPath,
      join(app, 'bin/p2p'),
    ];
    const env = { PATH: process.env.PATH, NODE_ENV: 'production' };
    for (const name of APPS) {
      const { stdout } = await run('setpriv', [...asUser, name, '--help'], { cwd: app, env });
      expect(stdout).toContain(`p2p ${name}:`);
    }

    const config = join(work!, 'tracker.yaml');
    writeFileSync(config, 'port: 0\nhost: 127.0.0.1\nlogFormat: json\n');
    const proc = spawn('setpriv', [...asUser, 'tracker', '--config', config], { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise((res) => proc.once('exit', res));
    try {
      let out = '';
      const port = await new Promise<number>((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`tracker did not start from the runtime tree:\n${out}`)), 20_000);
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
        void exited.then(() => rej(new Error(`tracker exited:\n${out}`)));
      });
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    } finally {
      proc.kill('SIGTERM');
      await exited;
    }
  });
});
