import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

// SWC keeps decorator metadata (Nest DI and class-validator need it); esbuild would drop it.
const plugins = [swc.vite({ module: { type: 'es6' }, jsc: { target: 'es2022' } })];
const resolve = { conditions: ['source', 'node', 'import', 'default'] };
// Server-side (where vitest runs specs) needs the conditions too, or '#ops' & co. resolve to dist/ (the last build).
const ssr = { resolve: { conditions: resolve.conditions } };

export default defineConfig({
  plugins,
  resolve,
  ssr,
  test: {
    pool: 'forks',
    projects: [
      {
        plugins,
        resolve,
        ssr,
        test: { name: 'unit', include: ['apps/**/*.spec.ts', 'libs/**/*.spec.ts', 'bench/**/*.spec.ts'], environment: 'node' },
      },
      {
        plugins,
        resolve,
        ssr,
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
