/** Units, quantiles and the lower bounds the cluster bench compares against (pure functions). */

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

/** "256MB" → 256e6, "20MiB" → 20·2^20, "10MB/s" → 10e6 (a rate is a size per second). */
export function parseBytes(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*(?:\/s)?\s*$/i.exec(text);
  if (!m) throw new Error(`not a size or rate: "${text}" (e.g. 256MB, 10MB/s, 20MiB)`);
  const value = Number(m[1]) * UNITS[(m[2] ?? '').toLowerCase()];
  if (!Number.isFinite(value) || value <= 0) throw new Error(`size or rate must be positive: "${text}"`);
  return Math.round(value);
}

/** The q-quantile (0..1) of `values` by the nearest-rank method (p100 = max). */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) throw new Error('quantile of nothing');
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}

export interface SwarmShape {
  /** Layer bytes F. */
  layerBytes: number;
  /** Agents N. */
  agents: number;
  /** Upload cap of the seed (the blob's owning proxy), bytes/s: u_s. */
  seedUpload: number;
  /** Upload cap of every agent, bytes/s: u_i. */
  agentUpload: number;
  /** Download cap of every agent, bytes/s: d_min. */
  agentDownload: number;
  /** Bandwidth of the origin → proxy transfer, bytes/s: min(origin upload, proxy download). */
  originToSeed: number;
  /** Upload cap of the origin registry host, bytes/s (the direct baseline's bottleneck). */
  originUpload: number;
}

export interface Bounds {
  /** Kumar–Ross: max(F/u_s, F/d_min, N·F/(u_s + Σu_i)), seed already holding the blob. */
  warm: number;
  /** Cold, if the proxy had to hold the whole blob before anyone got a byte (the design before the relay). */
  coldStoreAndForward: number;
  /** Cold, relaying the blob while it arrives from the origin (agents read the proxy's fetch). */
  coldPipelined: number;
  /** Fastest possible N direct pulls through the origin's link: max(F/d_min, N·F/u_origin). */
  direct: number;
}

/** Lower bounds on the time until the last of N agents holds the layer. */
export function lowerBounds(s: SwarmShape): Bounds {
  const f = s.layerBytes;
  const warm = Math.max(f / s.seedUpload, f / s.agentDownload, (s.agents * f) / (s.seedUpload + s.agents * s.agentUpload));
  const fill = f / s.originToSeed;
  return {
    warm,
    coldStoreAndForward: fill + warm,
    coldPipelined: Math.max(fill, warm),
    direct: Math.max(f / s.agentDownload, (s.agents * f) / s.originUpload),
  };
}

/** Points of the empirical CDF: after time t[i], (i+1)/n of the agents are done. */
export function cdfPoints(times: readonly number[]): { t: number; fraction: number }[] {
  const sorted = [...times].sort((a, b) => a - b);
  return sorted.map((t, i) => ({ t, fraction: (i + 1) / sorted.length }));
}

/** Human form of a byte count in decimal units ("256 MB"). */
export function formatBytes(bytes: number): string {
  if (bytes >= 1e9) return `${+(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${+(bytes / 1e6).toFixed(1)} MB`;
  if (bytes >= 1e3) return `${+(bytes / 1e3).toFixed(1)} kB`;
  return `${bytes} B`;
}
