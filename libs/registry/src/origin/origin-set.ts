import { OciError } from '../oci/oci.errors.js';

/** One origin registry: `base` is scheme://host[:port] without a trailing slash, `host` is host[:port]. */
export interface Origin {
  base: string;
  host: string;
}

// containerd names Docker Hub "docker.io" in ?ns= while its API lives at registry-1.docker.io.
const HOST_ALIASES: Record<string, string[]> = { 'registry-1.docker.io': ['docker.io', 'index.docker.io'] };

/**
 * The registries this node accelerates. `?ns=<host>` (containerd mirror mode) picks one by host; a
 * host that is not configured is refused so the agent never proxies to arbitrary hosts.
 */
export class OriginSet {
  private readonly byHost = new Map<string, Origin>();
  readonly default: Origin;

  constructor(registry: string, registries: readonly string[] = []) {
    this.default = toOrigin(registry);
    for (const url of [registry, ...registries]) {
      const up = toOrigin(url);
      for (const host of [up.host, ...hostVariants(up)]) if (!this.byHost.has(host)) this.byHost.set(host, up);
    }
  }

  /**
   * The origin for a request's `ns` query parameter (none → the default `registry`); unknown →
   * 404; given twice (`?ns=a&ns=b` parses to an array) → 400, not a TypeError answered as a 500.
   */
  resolve(ns: unknown): Origin {
    if (ns === undefined || ns === '') return this.default;
    if (typeof ns !== 'string') throw new OciError(400, 'NAME_INVALID', 'the ns query parameter must be given once', {});
    const up = this.byHost.get(ns.toLowerCase());
    if (!up) throw new OciError(404, 'NAME_UNKNOWN', 'registry not accelerated by this mirror', { ns: ns.slice(0, 255) });
    return up;
  }

  all(): Origin[] {
    return [...new Set(this.byHost.values())];
  }
}

function toOrigin(url: string): Origin {
  const u = new URL(url);
  return { base: `${u.protocol}//${u.host}`, host: u.host.toLowerCase() };
}

function hostVariants(up: Origin): string[] {
  const u = new URL(up.base);
  const out = [...(HOST_ALIASES[u.hostname] ?? [])];
  // A default port may or may not be spelled out in ns.
  if (!u.port) out.push(`${u.hostname}:${u.protocol === 'https:' ? 443 : 80}`);
  return out;
}
