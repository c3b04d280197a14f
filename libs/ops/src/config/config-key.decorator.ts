import 'reflect-metadata';

/** How a key's text value is read (from YAML or from a `P2P_*` environment variable). */
type ConfigKind = 'string' | 'number' | 'boolean' | 'rate' | 'size' | 'disk' | 'duration' | 'list' | 'url';

export interface ConfigKeyOptions {
  /** One or two sentences for `--help` and docs/config.md: what it does and why you would change it. */
  doc: string;
  kind: ConfigKind;
  /** For `--help` when the default needs words (e.g. "0 = unlimited"). */
  defaultText?: string;
  /** The key's earlier name, still read (file and `P2P_*` variable) with a warning at start. */
  formerly?: string;
}

export interface ConfigKeyInfo extends ConfigKeyOptions {
  key: string;
  env: string;
}

const KEYS = Symbol('p2p:config-keys');

/** Marks a property as a documented config key. Undocumented properties are not config. */
export function ConfigKey(options: ConfigKeyOptions): PropertyDecorator {
  return (target, property) => {
    const key = String(property);
    const own = (Reflect.getOwnMetadata(KEYS, target) ?? []) as ConfigKeyInfo[];
    Reflect.defineMetadata(KEYS, [...own, { ...options, key, env: envName(key) }], target);
  };
}

/** `downloadRate` → `P2P_DOWNLOAD_RATE`. */
export function envName(key: string): string {
  return `P2P_${key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()}`;
}

/** Every documented key of a config class, base classes first. */
export function configKeys(cls: abstract new () => object): ConfigKeyInfo[] {
  const chain: object[] = [];
  for (let p = cls.prototype as object | null; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) chain.unshift(p);
  const byKey = new Map<string, ConfigKeyInfo>();
  for (const proto of chain) {
    for (const info of (Reflect.getOwnMetadata(KEYS, proto) ?? []) as ConfigKeyInfo[]) byKey.set(info.key, info);
  }
  return [...byKey.values()];
}
