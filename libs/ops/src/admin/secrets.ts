import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';

export interface SecretSource {
  /** Environment variable that wins over the file (e.g. P2P_ADMIN_TOKEN). */
  env: string;
  /** File path from config; '' = none. */
  file: string;
}

export interface LoadedSecret {
  value: string | undefined;
  /** Where it came from, or why there is none: for a boot log line (never the value itself). */
  origin: string;
}

/**
 * Reads a token from its env variable or its file. A configured but missing file is not fatal:
 * Kubernetes users may not have created the optional Secret, and the app must still run.
 */
export function readSecret(source: SecretSource, env: NodeJS.ProcessEnv = process.env): LoadedSecret {
  const fromEnv = env[source.env]?.trim();
  if (fromEnv) return { value: fromEnv, origin: `env ${source.env}` };
  if (!source.file) return { value: undefined, origin: 'not configured' };
  try {
    const value = readFileSync(source.file, 'utf8').trim();
    return value ? { value, origin: `file ${source.file}` } : { value: undefined, origin: `file ${source.file} is empty` };
  } catch (err) {
    return { value: undefined, origin: `file ${source.file} unreadable (${(err as NodeJS.ErrnoException).code ?? 'error'})` };
  }
}

/** Constant-time comparison: both sides are hashed first so lengths leak nothing either. */
export function secretEquals(expected: string, given: string): boolean {
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b);
}

/** Extracts the token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  const m = value ? /^Bearer\s+(\S+)\s*$/i.exec(value) : null;
  return m?.[1];
}
