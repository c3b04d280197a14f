import { afterAll } from 'vitest';
import { removeTempDirs } from './app-process.js';

// Registered before the test file's own hooks, so it runs after them (vitest runs after-hooks as a
// stack): every process the file started is stopped by then.
afterAll(removeTempDirs);
