import { afterEach, describe, expect, it, vi } from 'vitest';
import { runCli } from './run-cli.js';

describe(runCli.name, () => {
  afterEach(() => vi.restoreAllMocks());

  it('refuses an app name that is an Object.prototype member (toString, constructor) as unknown', async () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    for (const name of ['toString', 'constructor', 'hasOwnProperty']) {
      await expect(runCli([name], {}, '/nonexistent/p2p')).resolves.toBe(2);
      expect(String(err.mock.calls.at(-1)?.[0])).toContain(`unknown app "${name}"`);
    }
  });
});
