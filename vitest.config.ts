import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

// SWC keeps decorator metadata (Nest DI and class-validator need it); esbuild would drop it.
const plugins = [swc.vite({ module: { type: 'es6' }, jsc: { target: 'es2022' } })];
const resolve = { conditions: ['source', 'node', 'import', 'default'] };

export default defineConfig({
  plugins,
  resolve,
  test: {
    pool: 'forks',
    projects: [
      {
        plugins,
        resolve,
        test: { name: 'unit', include: ['apps/**/*.spec.ts', 'libs/**/*.spec.ts', 'bench/**/*.spec.ts'], environment: 'node' },
      },
      {
        plugins,
        resolve,
        test: {
          name: 'e2e',
          include: ['test/**/*.e2e.ts'],
          setupFiles: ['test/support/temp-dirs.setup.ts'],
          environment: 'node',
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // Real processes, real ports and real disks: one file at a time keeps 2 cores honest.
          fileParallelism: false,
        },
      },
    ],
  },
});
