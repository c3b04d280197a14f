/**
 * Parsing of the human units used in config files and the admin API.
 *
 * Rates and sizes follow the registry world's habits: decimal SI prefixes (`100MB` = 100·10^6)
 * and binary IEC prefixes (`20MiB` = 20·2^20); a rate may end in `/s`. Plain integers are bytes.
 */

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  ki: 2 ** 10,
  kib: 2 ** 10,
  mi: 2 ** 20,
  mib: 2 ** 20,
  gi: 2 ** 30,
  gib: 2 ** 30,
  ti: 2 ** 40,
  tib: 2 ** 40,
};

const SIZE_RE = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i;

/** Parses a byte size (`1048576`, `"4MiB"`, `"1.5GB"`) into an integer; `undefined` when malformed. */
export function parseSize(value: unknown): number | undefined {
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  }
  if (typeof value !== 'string') return undefined;
  const m = SIZE_RE.exec(value);
  if (!m) return undefined;
  const factor = SIZE_UNITS[m[2].toLowerCase()] as number | undefined;
  if (factor === undefined) return undefined;
  const bytes = Math.round(Number(m[1]) * factor);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** A size on a disk: bytes, or a fraction of the filesystem's size (`"20%"`), resolved against the data dir. */
export type DiskAmount = { bytes: number } | { fraction: number };

const PERCENT_RE = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/;

/** Parses a disk amount: a size (`"50GB"`, bytes) or a percentage of the filesystem (`"20%"`, 0–100). */
export function parseDiskAmount(value: unknown): DiskAmount | undefined {
  if (typeof value === 'string') {
    const m = PERCENT_RE.exec(value);
    if (m) {
      const percent = Number(m[1]);
      return percent <= 100 ? { fraction: percent / 100 } : undefined;
    }
  }
  const bytes = parseSize(value);
  return bytes === undefined ? undefined : { bytes };
}

/** Parses a rate (`20000000`, `"100MB"`, `"20MiB/s"`) in units per second; 0 means unlimited. */
export function parseRate(value: unknown): number | undefined {
  if (typeof value === 'string') {
    const trimmed = value.trim().replace(/\/s$/i, '');
    return parseSize(trimmed);
  }
  return parseSize(value);
}

const DURATION_UNITS: Record<string, number> = { '': 1, ms: 1e-3, s: 1, m: 60, h: 3600 };
const DURATION_RE = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/i;

/** Parses a duration in seconds (`10`, `"500ms"`, `"5m"`) into seconds; `undefined` when malformed. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = DURATION_RE.exec(value);
  if (!m) return undefined;
  // The unit group is optional: absent, it is undefined at run time (the type says string).
  const unit = m[2] as string | undefined;
  return Number(m[1]) * DURATION_UNITS[(unit ?? '').toLowerCase()];
}

/** Renders bytes for people: `20000000` → `20 MB`; 0 → `0`. */
export function formatBytes(bytes: number): string {
  if (bytes === 0) return '0';
  const units: Array<[number, string]> = [
    [1e12, 'TB'],
    [1e9, 'GB'],
    [1e6, 'MB'],
    [1e3, 'kB'],
  ];
  for (const [factor, unit] of units) {
    if (bytes >= factor) return `${+(bytes / factor).toFixed(2)} ${unit}`;
  }
  return `${bytes} B`;
}
