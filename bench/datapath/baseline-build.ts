import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DatapathBenchError } from './datapath-stats.js';
import { run } from './bench-processes.js';

/** A build of the apps the bench can run: its root holds bin/p2p and a compiled dist/. */
export interface BuildUnderTest {
  root: string;
  /** HEAD of the root's checkout (the working tree may carry uncommitted changes on top). */
  commit: string;
  label: string;
}

/** Written after a successful `npm ci` + build, so the next run reuses the worktree as it is. */
const STAMP = '.datapath-bench-built';

export async function describeBuild(root: string, label: string): Promise<BuildUnderTest> {
  if (!existsSync(join(root, 'bin', 'p2p')) || !existsSync(join(root, 'dist', 'apps', 'agent', 'src', 'main.js'))) {
    throw new DatapathBenchError(`${root} has no built apps (bin/p2p and dist/apps/agent/src/main.js); run npm run build there`);
  }
  const commit = (await run('git', ['-C', root, 'rev-parse', 'HEAD']).catch(() => 'unknown')).trim();
  return { root, commit, label };
}

export function baselineDir(ref: string): string {
  return `/tmp/p2p-baseline-${ref.replace(/[^A-Za-z0-9._-]/g, '_')}`;
}

/**
 * The baseline ref checked out in a git worktree under /tmp with its own dependencies (its lockfile
 * may differ from the working tree's) and build. A worktree already built at the same commit is
 * reused: npm ci and tsc cost a minute or more on this machine.
 */
export async function prepareBaseline(repo: string, ref: string, log: (line: string) => void): Promise<BuildUnderTest> {
  const commit = (await run('git', ['-C', repo, 'rev-parse', '--verify', `${ref}^{commit}`])).trim();
  const dir = baselineDir(ref);
  const stamp = join(dir, STAMP);
  if (existsSync(stamp) && (await readFile(stamp, 'utf8')).trim() === commit) {
    log(`baseline ${ref} (${commit.slice(0, 7)}): reusing the build in ${dir}`);
    return describeBuild(dir, `baseline ${ref}`);
  }
  if (!existsSync(dir)) {
    log(`baseline ${ref}: git worktree add ${dir}`);
    await run('git', ['-C', repo, 'worktree', 'add', '--detach', dir, commit]);
  } else {
    const head = (await run('git', ['-C', dir, 'rev-parse', 'HEAD'])).trim();
    if (head !== commit)
      throw new DatapathBenchError(
        `${dir} is checked out at ${head.slice(0, 7)}, not ${ref} (${commit.slice(0, 7)}); remove it: git worktree remove --force ${dir}`,
      );
  }
  log(`baseline ${ref}: npm ci`);
  await run('npm', ['ci', '--no-audit', '--no-fund'], { cwd: dir, timeoutMs: 900_000 });
  log(`baseline ${ref}: npm run build`);
  await run('npm', ['run', 'build'], { cwd: dir, timeoutMs: 900_000 });
  await writeFile(stamp, `${commit}\n`);
  return describeBuild(dir, `baseline ${ref}`);
}

export async function removeBaseline(repo: string, dir: string): Promise<void> {
  await run('git', ['-C', repo, 'worktree', 'remove', '--force', dir]);
}
