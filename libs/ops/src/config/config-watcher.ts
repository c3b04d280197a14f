import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Logger } from '@nestjs/common';
import { ConfigError, loadConfig, textHash, type ConfigOrigin } from './config-loader.js';
import { configKeys } from './config-key.decorator.js';

/** What a reload did, as counted in `p2p_config_reloads_total{result}`. */
export type ReloadResult = 'applied' | 'rejected' | 'restart_needed';

export interface ConfigWatcherOptions<T extends object> {
  /** The running config (as loaded at boot) and how it was loaded. */
  running: T;
  origin: ConfigOrigin<T> & { file: string };
  /** Keys applied live (the app's rate limits); any other changed key needs a restart. */
  liveKeys: readonly string[];
  /** Applies one live key's new value (e.g. `throttle.set(key, value, 'file')`). */
  apply(key: string, value: unknown): void;
  /** Called once per reload with its result (the metric). */
  onResult?(result: ReloadResult): void;
  /**
   * Safety-net poll of the file's content hash. The directory watch reacts at once, but fs.watch
   * is not reliable everywhere (network and overlay filesystems, inotify limits).
   */
  pollMs?: number;
  /** Quiet time after a directory event before reading: editors and `kubectl cp` write in steps. */
  settleMs?: number;
  /** false = poll only (tests of the fallback). */
  watchDirectory?: boolean;
  logger?: Logger;
}

/**
 * Watches the app's config file and applies edits live, the way a ConfigMap edit reaches a pod.
 *
 * kubelet mounts a ConfigMap as `config.yaml -> ..data/config.yaml` with `..data -> ..<timestamp>`
 * and updates it by writing a new timestamped dir and renaming a `..data_tmp` symlink over `..data`:
 * the file's own inode never changes, so watching the file misses every update. We watch its
 * DIRECTORY (any entry changing there may mean new content: the swap, an in-place edit, an editor's
 * rename-over) and poll the content on a short interval as a fallback; either way the decision is
 * made on the sha256 of what the path reads now, so duplicate events cost one small file read.
 *
 * A changed file is validated like at boot (same class, same `P2P_*` overrides, which keep winning).
 * Invalid → logged with each problem, nothing changes. Valid → the live keys whose value differs
 * from the previous file version are applied (a key the edit did not touch keeps a value set by
 * PATCH meanwhile: the later change wins); other keys that differ from the running values are
 * named in one "needs a restart" warning.
 */
export class ConfigWatcher<T extends object> {
  private readonly logger: Logger;
  private readonly file: string;
  private readonly live: Set<string>;
  private readonly keys: string[];
  /** The last valid file version: live keys are applied only where a new version differs from it. */
  private lastLoaded: T;
  private lastHash: string | undefined;
  private dirWatcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private settle: NodeJS.Timeout | undefined;
  /** Serialises checks: an event during a check schedules exactly one more. */
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(private readonly options: ConfigWatcherOptions<T>) {
    this.logger = options.logger ?? new Logger('ConfigReload');
    this.file = options.origin.file;
    this.keys = configKeys(options.origin.cls).map((k) => k.key);
    this.live = new Set(options.liveKeys.filter((k) => this.keys.includes(k)));
    this.lastLoaded = options.running;
    this.lastHash = options.origin.fileHash;
  }

  start(): void {
    const dir = dirname(this.file);
    if (this.options.watchDirectory !== false) this.watchDirectory(dir);
    this.poll = setInterval(() => void this.check(), this.pollMs());
    this.poll.unref();
    this.logger.log({
      msg: 'watching the config file: live keys apply on edit, other keys need a restart',
      file: this.file,
      live: [...this.live],
    });
  }

  private watchDirectory(dir: string): void {
    try {
      this.dirWatcher = watch(dir, { persistent: false }, () => this.soon());
      this.dirWatcher.on('error', (err) => {
        this.logger.warn({
          msg: `watching the directory failed; polling the file every ${this.pollMs() / 1000}s instead`,
          dir,
          file: this.file,
          reason: err.message,
        });
        this.dirWatcher?.close();
        this.dirWatcher = undefined;
      });
    } catch (err) {
      this.logger.warn({
        msg: `cannot watch the directory; polling the file every ${this.pollMs() / 1000}s instead`,
        dir,
        file: this.file,
        reason: (err as Error).message,
      });
    }
  }

  stop(): void {
    this.stopped = true;
    this.dirWatcher?.close();
    if (this.poll) clearInterval(this.poll);
    if (this.settle) clearTimeout(this.settle);
  }

  /** Reads the file now and reloads it if its content changed; resolves when done (tests await it). */
  check(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          try {
            await this.checkOnce();
          } catch (err) {
            // A reload must never take the app down: log it and keep the running values.
            this.logger.error({ msg: 'reloading the config file failed; the running values stay', file: this.file, err });
            this.options.onResult?.('rejected');
          }
        } while (this.takeAgain() && !this.stopped);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /** Whether an event came in during the last check (and clears it). */
  private takeAgain(): boolean {
    const again = this.again;
    this.again = false;
    return again;
  }

  private soon(): void {
    if (this.stopped) return;
    if (this.settle) clearTimeout(this.settle);
    this.settle = setTimeout(() => void this.check(), this.options.settleMs ?? 200);
    this.settle.unref();
  }

  private pollMs(): number {
    return this.options.pollMs ?? 2000;
  }

  private async checkOnce(): Promise<void> {
    if (this.stopped) return;
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      // Between kubelet's steps the path always resolves; a missing file is an operator's doing.
      // Reported once per distinct failure, not every poll.
      const mark = `unreadable:${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
      if (this.lastHash !== mark) {
        this.lastHash = mark;
        this.reject([`cannot read the file: ${(err as Error).message}`]);
      }
      return;
    }
    const hash = textHash(text);
    if (hash === this.lastHash) return;
    this.lastHash = hash;

    let next: T;
    try {
      const { cls, file, env, defaults } = this.options.origin;
      next = loadConfig(cls, { file, env, defaults, fileText: text });
    } catch (err) {
      this.reject(err instanceof ConfigError ? err.problems : [(err as Error).message]);
      return;
    }

    const applied: string[] = [];
    for (const key of this.live) {
      const value = (next as Record<string, unknown>)[key];
      if (same(value, (this.lastLoaded as Record<string, unknown>)[key])) continue;
      this.options.apply(key, value);
      applied.push(`${key}=${JSON.stringify(value)}`);
    }
    this.lastLoaded = next;
    // Compared with the running values, not the previous file: an edit that reverts a pending
    // key clears the warning, and one that leaves it pending repeats it.
    const restart = this.keys.filter(
      (k) => !this.live.has(k) && !same((next as Record<string, unknown>)[k], (this.options.running as Record<string, unknown>)[k]),
    );
    const what = applied.length > 0 ? `applied ${applied.join(', ')}` : 'no live key changed';
    if (restart.length > 0) {
      // Key names only: values of non-live keys may be paths or URLs an operator would not want echoed.
      this.logger.warn({
        msg: `config file reloaded (${what}); ${restart.join(', ')} changed: needs a restart to take effect, the running values stay until then`,
        file: this.file,
        applied,
        restart,
      });
      this.options.onResult?.('restart_needed');
    } else {
      this.logger.log({ msg: `config file reloaded: ${what}`, file: this.file, applied });
      this.options.onResult?.('applied');
    }
  }

  private reject(problems: string[]): void {
    this.logger.warn({ msg: 'config file changed but is not usable; ignored, the running values stay', file: this.file, problems });
    this.options.onResult?.('rejected');
  }
}

function same(a: unknown, b: unknown): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}
