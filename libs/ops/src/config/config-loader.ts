import { createHash } from 'node:crypto';
import { readFileSync, statfsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { validateSync, type ValidationError } from 'class-validator';
import { parse as parseYaml } from 'yaml';
import { configKeys, envName, type ConfigKeyInfo } from './config-key.decorator.js';
import { parseDiskAmount, parseDuration, parseRate, parseSize } from './units.js';

/** Raised when a config file or `P2P_*` variable is unusable; `problems` names each bad key. */
export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid configuration (${source}):\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Reads a file a config key names, once, when the app starts (TLS certificate, key, CA): its
 * absence is a ConfigError naming the key. Not part of the config check: that one validates
 * values on any machine (CI renders the Kubernetes ConfigMaps, whose paths exist only in a pod).
 */
export function readConfiguredFile(key: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(key, [
      `${key}: cannot read ${JSON.stringify(path)} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    ]);
  }
}

export interface LoadConfigOptions {
  /** YAML file path; omitted → built-in defaults plus environment. */
  file?: string;
  /** Environment to read `P2P_*` overrides from (default: `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** Values applied after the file and before the environment (used by `npm start`'s dev defaults). */
  defaults?: Record<string, unknown>;
  /** The file's text when the caller has already read it (a reload validates exactly what it hashed). */
  fileText?: string;
}

/** Where a key's loaded value came from: a `P2P_*` variable, the config file, or a default. */
type ConfigValueSource = 'env' | 'file' | 'default';

/** How a config object was loaded: what a reload needs to load it again the same way. */
export interface ConfigOrigin<T extends object = object> {
  cls: ConfigClass<T>;
  file?: string;
  /** The `P2P_*` overrides read at boot (config keys only): a reload applies the same ones (env wins). */
  env: NodeJS.ProcessEnv;
  defaults?: Record<string, unknown>;
  /** sha256 of the file text that was loaded (undefined without a file). */
  fileHash?: string;
  sources: Record<string, ConfigValueSource>;
  /** Things to tell the operator at start (keys given under an earlier name). */
  notes: readonly string[];
}

const origins = new WeakMap<object, ConfigOrigin>();

/** How `config` was loaded, if `loadConfig` made it (tests may build config objects by hand). */
export function configOrigin<T extends object>(config: T): ConfigOrigin<T> | undefined {
  return origins.get(config) as ConfigOrigin<T> | undefined;
}

export function textHash(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export type ConfigClass<T> = new () => T;

/**
 * Loads a config class from YAML + `P2P_<UPPER_SNAKE_KEY>` environment overrides, validates it
 * once with class-validator, and normalises unit strings (rates, sizes, durations) to numbers.
 * Unknown keys are errors: a typo in a ConfigMap must fail loudly, not be ignored.
 */
export function loadConfig<T extends object>(cls: ConfigClass<T>, options: LoadConfigOptions = {}): T {
  let env = options.env ?? process.env;
  const source = options.file ?? 'built-in defaults';
  const keys = configKeys(cls);
  const known = new Map(keys.map((k) => [k.key, k]));
  const problems: string[] = [];

  const fileText = options.file === undefined ? undefined : (options.fileText ?? readText(options.file));
  const fromFile = options.file === undefined || fileText === undefined ? {} : parseFile(options.file, fileText);
  const notes: string[] = [];
  // Renamed keys keep working under their earlier name (file or env), with a note to update them.
  const formerly = new Map(keys.flatMap((k) => (k.formerly ? [[k.formerly, k] as const] : [])));
  const raw: Record<string, unknown> = {};
  for (const [key, value] of Object.entries({ ...(options.defaults ?? {}), ...fromFile })) {
    const renamed = formerly.get(key);
    if (!renamed) raw[key] = value;
    else if (Object.hasOwn(fromFile, renamed.key))
      problems.push(`${key}: the earlier name of ${renamed.key}, which is also set; keep only ${renamed.key}`);
    else {
      raw[renamed.key] = value;
      notes.push(`config key ${key} is now ${renamed.key}; the old name still works but will go`);
    }
  }
  for (const [former, info] of formerly) {
    const oldEnv = envName(former);
    const old = env[oldEnv];
    if (old === undefined) continue;
    if (env[info.env] !== undefined) problems.push(`${oldEnv}: the earlier name of ${info.env}, which is also set; keep only ${info.env}`);
    else env = { ...env, [info.env]: old };
    notes.push(`config variable ${oldEnv} is now ${info.env}; the old name still works but will go`);
  }
  for (const key of Object.keys(raw)) {
    if (!known.has(key)) problems.push(`${key}: unknown key${suggest(key, [...known.keys()])}`);
  }
  const sources: Record<string, ConfigValueSource> = {};
  for (const info of keys) {
    const text = env[info.env];
    if (text !== undefined) raw[info.key] = fromEnv(info, text);
    sources[info.key] = text !== undefined ? 'env' : Object.hasOwn(fromFile, info.key) ? 'file' : 'default';
  }

  const config = new cls();
  for (const [key, value] of Object.entries(raw)) {
    if (known.has(key)) (config as Record<string, unknown>)[key] = value;
  }
  for (const error of validateSync(config, { forbidUnknownValues: true })) problems.push(...describe(error));
  if (problems.length > 0) throw new ConfigError(source, problems);

  for (const info of keys) normalise(config as Record<string, unknown>, info);
  origins.set(config, {
    cls,
    file: options.file,
    env: Object.freeze(Object.fromEntries(keys.filter((k) => env[k.env] !== undefined).map((k) => [k.env, env[k.env]]))),
    defaults: options.defaults,
    fileHash: fileText === undefined ? undefined : textHash(fileText),
    sources,
    notes,
  });
  return config;
}

function readText(file: string): string | undefined {
  if (!file) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`cannot read the file: ${(err as Error).message}`]);
  }
}

function parseFile(file: string, text: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(file, [`not valid YAML: ${(err as Error).message}`]);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError(file, ['the file must hold a mapping of keys to values']);
  }
  return { ...(doc as Record<string, unknown>) };
}

/** Environment values are text: read them by the key's kind, leaving garbage for the validator to name. */
function fromEnv(info: ConfigKeyInfo, text: string): unknown {
  switch (info.kind) {
    case 'number':
      return text.trim() !== '' && !Number.isNaN(Number(text)) ? Number(text) : text;
    case 'boolean':
      return text === 'true' ? true : text === 'false' ? false : text;
    case 'list':
      return text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    case 'rate':
    case 'size':
    case 'disk':
    case 'duration':
      return /^\d+$/.test(text.trim()) ? Number(text) : text;
    default:
      return text;
  }
}

function normalise(config: Record<string, unknown>, info: ConfigKeyInfo): void {
  if (info.kind === 'disk') {
    const amount = parseDiskAmount(config[info.key]);
    if (!amount) throw new Error(`internal: ${info.key} passed validation but is no disk amount`);
    config[info.key] = diskBytes(amount, typeof config.dataDir === 'string' ? config.dataDir : '');
    return;
  }
  const parse = info.kind === 'rate' ? parseRate : info.kind === 'size' ? parseSize : info.kind === 'duration' ? parseDuration : undefined;
  if (parse) config[info.key] = parse(config[info.key]);
}

/**
 * A disk amount in bytes: a percentage is of the size of the filesystem holding `dataDir` (or its
 * nearest existing parent: the app creates the dir later), measured once at load — a filesystem
 * does not change size under a running process.
 */
function diskBytes(amount: NonNullable<ReturnType<typeof parseDiskAmount>>, dataDir: string): number {
  if ('bytes' in amount) return amount.bytes;
  let dir = resolve(dataDir || '.');
  for (;;) {
    try {
      const fs = statfsSync(dir);
      return Math.round(amount.fraction * fs.blocks * fs.bsize);
    } catch (err) {
      const parent = dirname(dir);
      // Not there yet (or under a file: readiness reports that dir as unusable later).
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || parent === dir) throw err;
      dir = parent;
    }
  }
}

function describe(error: ValidationError, prefix = ''): string[] {
  const path = `${prefix}${error.property}`;
  // class-validator messages usually start with the property already ("port must not be…").
  const own = Object.values(error.constraints ?? {}).map((m) => (m.startsWith(`${error.property} `) ? `${prefix}${m}` : `${path}: ${m}`));
  const nested = (error.children ?? []).flatMap((c) => describe(c, `${path}.`));
  return [...own, ...nested];
}

function suggest(key: string, known: string[]): string {
  const lower = key.toLowerCase();
  const close = known.find((k) => k.toLowerCase() === lower || distance(k.toLowerCase(), lower) <= 2);
  return close ? ` (did you mean ${close}?)` : '';
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length][b.length];
}
