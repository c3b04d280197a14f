import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

// `npm run drills`: every drill in this folder, the CI ones (*.e2e.ts) and the long ones (*.drill.ts),
// one file at a time against the compiled apps (build first).
export default defineConfig({
  plugins: [swc.vite({ module: { type: 'es6' }, jsc: { target: 'es2022' } })],
  resolve: { conditions: ['source', 'node', 'import', 'default'] },
  // Specs run server-side: without this '#ops' & co. resolve to dist/.
  ssr: { resolve: { conditions: ['source', 'node', 'import', 'default'] } },
  test: {
    name: 'drills',
    root: new URL('../..', import.meta.url).pathname,
    include: ['test/drills/**/*.e2e.ts', 'test/drills/**/*.drill.ts'],
    setupFiles: ['test/support/temp-dirs.setup.ts'],
    environment: 'node',
    pool: 'forks',
    testTimeout: 300_000,
    hookTimeout: 180_000,
    fileParallelism: false,
  },
});
