import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { Logger } from '@nestjs/common';
import { request } from 'undici';
import { NoProxyAvailableError } from '../swarm.errors.js';
import { rendezvousOrder } from './rendezvous.js';

export interface ProxyRingOptions {
  /** Proxy base URLs; a single URL with a DNS host (headless Service) expands to one per address. */
  proxies: string[];
  /** Seconds between re-resolving and health checking. */
  refreshSeconds: number;
  /** Health check timeout, ms. */
  healthTimeoutMs?: number;
  /** Resolves a host to its addresses (default: the system resolver, all addresses). */
  resolve?: (host: string) => Promise<string[]>;
  /** True when a proxy base URL is healthy (default: `GET <url>/healthz` answers 200). */
  check?: (baseUrl: string) => Promise<boolean>;
}

export interface ProxyMember {
  url: string;
  healthy: boolean;
}

/**
 * Which proxy owns a blob: rendezvous hashing of the digest over the healthy proxies, so every
 * agent asks the same proxy and each blob leaves the origin once per cluster. Re-resolved and
 * health checked every `refreshSeconds`; callers report failures with `markDown`.
 */
export class ProxyRing {
  private readonly logger = new Logger(ProxyRing.name);
  private members: ProxyMember[] = [];
  private addresses = new Set<string>();
  private timer?: NodeJS.Timeout;
  private refreshing?: Promise<void>;

  constructor(private readonly options: ProxyRingOptions) {}

  /** First refresh, then periodic ones (stop with `stop()`). */
  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.options.refreshSeconds * 1000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Re-resolves the proxy list and health checks every member (concurrent calls share one run). */
  refresh(): Promise<void> {
    this.refreshing ??= this.doRefresh().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  /** Proxy base URLs for `digest` in preference order: healthy ones first, by rendezvous weight. */
  ownersFor(digest: string): string[] {
    if (this.members.length === 0) throw new NoProxyAvailableError('no proxy configured or resolved');
    const healthy = this.members.filter((m) => m.healthy).map((m) => m.url);
    const down = this.members.filter((m) => !m.healthy).map((m) => m.url);
    // Down proxies stay last rather than gone: with all of them down one may have just recovered.
    return [...rendezvousOrder(healthy, digest), ...rendezvousOrder(down, digest)];
  }

  /** A caller failed to reach `url`: rank it last until the next refresh finds it healthy. */
  markDown(url: string): void {
    const m = this.members.find((x) => x.url === url);
    if (m?.healthy) {
      m.healthy = false;
      this.logger.warn(`proxy ${url} marked down`);
    }
  }

  list(): ProxyMember[] {
    return this.members.map((m) => ({ ...m }));
  }

  /** True when `ip` is one of the proxies' addresses (as resolved at the last refresh). */
  isProxyAddress(ip: string): boolean {
    return this.addresses.has(ip.replace(/^::ffff:/, ''));
  }

  private async doRefresh(): Promise<void> {
    const urls = await this.expand();
    const check = this.options.check ?? ((url: string) => healthz(url, this.options.healthTimeoutMs ?? 2000));
    const members = await Promise.all(urls.map(async (url) => ({ url, healthy: await check(url).catch(() => false) })));
    const before = new Map(this.members.map((m) => [m.url, m.healthy]));
    for (const m of members) {
      const was = before.get(m.url) ?? true;
      if (was !== m.healthy) this.logger.log(`proxy ${m.url} is ${m.healthy ? 'up' : 'down'}`);
    }
    this.members = members;
  }

  private async expand(): Promise<string[]> {
    const resolve = this.options.resolve ?? resolveAll;
    const addresses = new Set<string>();
    const expanded: string[] = [];
    const single = this.options.proxies.length === 1;
    for (const raw of this.options.proxies) {
      const url = new URL(raw);
      const host = url.hostname.replace(/^\[|\]$/g, '');
      if (isIP(host)) {
        addresses.add(host);
        expanded.push(baseUrl(url));
        continue;
      }
      let ips: string[] = [];
      try {
        ips = await resolve(host);
      } catch (err) {
        this.logger.warn(`cannot resolve proxy host ${host}: ${(err as Error).message}`);
      }
      ips.forEach((ip) => addresses.add(ip));
      if (single && ips.length > 0) {
        // A headless Service: each address is one proxy.
        for (const ip of ips) {
          const u = new URL(url);
          u.hostname = isIP(ip) === 6 ? `[${ip}]` : ip;
          expanded.push(baseUrl(u));
        }
      } else {
        expanded.push(baseUrl(url));
      }
    }
    this.addresses = addresses;
    return [...new Set(expanded)];
  }
}

function baseUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
}

async function resolveAll(host: string): Promise<string[]> {
  const found = await lookup(host, { all: true });
  return found.map((a) => a.address).sort();
}

async function healthz(url: string, timeoutMs: number): Promise<boolean> {
  const res = await request(`${url}/healthz`, { headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal: AbortSignal.timeout(timeoutMs) });
  await res.body.dump();
  return res.statusCode === 200;
}
