import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bearerToken, readSecret, secretEquals } from './secrets.js';

describe(readSecret.name, () => {
  it('prefers the environment, then the file (trimmed)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sec-'));
    await writeFile(join(dir, 't'), 'from-file\n');
    expect(readSecret({ env: 'X_TOKEN', file: join(dir, 't') }, { X_TOKEN: 'from-env' }).value).toBe('from-env');
    expect(readSecret({ env: 'X_TOKEN', file: join(dir, 't') }, {}).value).toBe('from-file');
  });

  it('reports a missing file without failing and without a value', () => {
    const secret = readSecret({ env: 'X_TOKEN', file: '/nonexistent/token' }, {});
    expect(secret.value).toBeUndefined();
    expect(secret.origin).toContain('ENOENT');
  });
});

describe(secretEquals.name, () => {
  it('compares exactly', () => {
    expect(secretEquals('abc', 'abc')).toBe(true);
    expect(secretEquals('abc', 'abd')).toBe(false);
    expect(secretEquals('abc', 'abcd')).toBe(false);
  });
});

describe(bearerToken.name, () => {
  it('extracts the token of a Bearer header only', () => {
    expect(bearerToken('Bearer xyz')).toBe('xyz');
    expect(bearerToken('bearer xyz')).toBe('xyz');
    expect(bearerToken('Basic xyz')).toBeUndefined();
    expect(bearerToken(undefined)).toBeUndefined();
  });
});
