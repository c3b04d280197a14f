import { fork, type ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { configKeys } from '../config/config-key.decorator.js';
import { ConfigError, loadConfig } from '../config/config-loader.js';

/** What each app module exports for the CLI. */
export interface AppEntry<C extends object = object> {
  summary: string;
  configClass: new () => C;
  /** Values `npm start` (`p2p all`) uses so all three apps run together on one machine. */
  devDefaults: Record<string, unknown>;
  start(config: C): Promise<void>;
}

export type AppLoaders = Record<string, () => Promise<AppEntry>>;

const USAGE = `Usage: p2p <app> [--config FILE.yaml]
       p2p <app> --help      list every config key of that app with its default
       p2p all               run tracker, proxy and agent together with development defaults

Config is YAML with camelCase keys; each key can be overridden by env P2P_<UPPER_SNAKE_KEY>.`;

/** `p2p <agent|proxy|tracker|all> [--config FILE] [--help]`; returns the process exit code. */
export async function runCli(argv: string[], apps: AppLoaders, binPath: string): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' }, dev: { type: 'boolean' } },
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  const [name, ...extra] = parsed.positionals;
  if (!name) {
    process.stdout.write(`${USAGE}\n\n${await appList(apps)}`);
    return parsed.values.help ? 0 : 2;
  }
  if (extra.length > 0) {
    process.stderr.write(`unexpected arguments: ${extra.join(' ')}\n\n${USAGE}\n`);
    return 2;
  }
  if (name === 'all') return runAll(Object.keys(apps), binPath);
  const load = apps[name];
  if (!load) {
    process.stderr.write(`unknown app "${name}"\n\n${USAGE}\n\n${await appList(apps)}`);
    return 2;
  }
  const entry = await load();
  if (parsed.values.help) {
    process.stdout.write(helpFor(name, entry));
    return 0;
  }
  let config: object;
  try {
    config = loadConfig(entry.configClass, { file: parsed.values.config, defaults: parsed.values.dev ? entry.devDefaults : undefined });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`p2p ${name}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  await entry.start(config);
  return -1; // keep running: the app exits the process itself on SIGTERM
}

async function appList(apps: AppLoaders): Promise<string> {
  const lines = await Promise.all(Object.entries(apps).map(async ([n, load]) => `  ${n.padEnd(9)}${(await load()).summary}`));
  return `Apps:\n${lines.join('\n')}\n`;
}

/** Every key, its env variable, default and doc: the same source docs/config.md is generated from. */
export function helpFor(name: string, entry: AppEntry): string {
  const defaults = new entry.configClass() as Record<string, unknown>;
  const rows = configKeys(entry.configClass).map((k) => {
    const def = k.defaultText ?? JSON.stringify(defaults[k.key]);
    return `  ${k.key}  (${k.kind}, env ${k.env})\n      default: ${def}\n      ${k.doc}`;
  });
  return `p2p ${name}: ${entry.summary}\n\nUsage: p2p ${name} [--config FILE.yaml]\n\nConfig keys:\n${rows.join('\n')}\n`;
}

/** `npm start`: each app in its own process (as in a cluster), logs prefixed, stopped together. */
async function runAll(names: string[], binPath: string): Promise<number> {
  const order = ['tracker', 'proxy', 'agent'].filter((n) => names.includes(n));
  const children: ChildProcess[] = order.map((n) => fork(binPath, [n, '--dev'], { stdio: 'inherit' }));
  return new Promise<number>((resolve) => {
    let left = children.length;
    let code = 0;
    const stopAll = () => children.forEach((c) => c.exitCode === null && c.kill('SIGTERM'));
    process.once('SIGINT', stopAll);
    process.once('SIGTERM', stopAll);
    for (const child of children) {
      child.on('exit', (c) => {
        if (c && c !== 0) {
          code = c;
          stopAll();
        }
        if (--left === 0) resolve(code);
      });
    }
  });
}
