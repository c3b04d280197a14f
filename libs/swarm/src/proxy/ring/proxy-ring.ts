import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { Logger } from '@nestjs/common';
import { Agent, request, type Dispatcher } from 'undici';
import { NoProxyAvailableError } from '../../swarm.errors.js';
import type { BlobOwners } from './blob-owners.js';
import { rendezvousOrder } from './rendezvous.js';

export interface ProxyRingOptions {
  /** Proxy base URLs; a single URL with a DNS host (headless Service) expands to one per address. */
  proxies: string[];
  /** Seconds between re-resolving and health checking. */
  refreshSeconds: number;
  /** Resolves a host to its addresses (default: the system resolver, all addresses). */
  resolve?: (host: string) => Promise<string[]>;
  /** True when a proxy base URL is healthy (default: `GET <url>/healthz` answers 200). */
  check?: (baseUrl: string) => Promise<boolean>;
  /**
   * PEM CA certificate(s) that https:// proxies' certificates must chain to (`proxyCaFile`);
   * replaces the system's CAs for proxy connections. Unset: the system's CAs.
   */
  ca?: string | Buffer;
}

/** Distinct blobs a proxy fails in a row (no success between) before it is ranked down although it answers. */
export const BLOB_FAILURES_BEFORE_DOWN = 3;

export interface ProxyMember {
  url: string;
  healthy: boolean;
}

/** Health check timeout, ms. */
const HEALTH_TIMEOUT_MS = 2000;

/**
 * Which proxy owns a blob: rendezvous hashing of the digest over the healthy proxies, so every
 * agent asks the same proxy and each blob leaves the origin once per cluster. Re-resolved and
 * health checked every `refreshSeconds`; callers report failures with `markDown`.
 */
export class ProxyRing implements BlobOwners {
  private readonly logger = new Logger(ProxyRing.name);
  private members: ProxyMember[] = [];
  /** Address → the DNS name it was resolved from (a headless Service): the name its TLS certificate is for. */
  private tlsNames = new Map<string, string>();
  /** Per proxy, the blobs it failed since it last served one (see `blobFailed`). */
  private readonly failing = new Map<string, Set<string>>();
  private timer?: NodeJS.Timeout;
  private refreshing?: Promise<void>;
  /**
   * How to reach proxies: every request to a proxy (torrent, relay, health check) goes through it.
   * TLS certificates are checked against `ca` and against the name the proxy was configured by,
   * also when a headless Service name was expanded into pod addresses (certificates name the
   * Service, not pod IPs).
   */
  readonly dispatcher: Dispatcher;

  constructor(private readonly options: ProxyRingOptions) {
    this.dispatcher = new Agent({
      connect: {
        ...(options.ca ? { ca: options.ca } : {}),
        checkServerIdentity: (host: string, cert: PeerCertificate) =>
          checkServerIdentity(this.tlsNames.get(host.replace(/^\[|\]$/g, '')) ?? host, cert),
      },
    });
  }

  /** First refresh, then periodic ones (stop with `stop()`). */
  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.options.refreshSeconds * 1000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    void this.dispatcher.close().catch(() => undefined);
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
  markDown(url: string, reason = 'unreachable'): void {
    const m = this.members.find((x) => x.url === url);
    if (m?.healthy) {
      m.healthy = false;
      this.logger.warn({ msg: 'proxy marked down', proxy: url, reason });
    }
  }

  /**
   * `url` answered but failed one blob (5xx, a relay that broke off): that blob goes to the origin,
   * and the proxy stays in the ring — one blob's trouble (its origin fetch dropped) says nothing
   * about the others. Only a proxy failing BLOB_FAILURES_BEFORE_DOWN distinct blobs in a row, with
   * no success between (a broken disk: 5xx for everything), is ranked down.
   */
  blobFailed(url: string, digest: string): void {
    let failed = this.failing.get(url);
    if (!failed) this.failing.set(url, (failed = new Set()));
    if (failed.size < BLOB_FAILURES_BEFORE_DOWN) failed.add(digest);
    if (failed.size >= BLOB_FAILURES_BEFORE_DOWN) this.markDown(url, `${failed.size} blobs in a row failed`);
  }

  /** `url` served a blob (a torrent, or a relay to its end): its run of failures is over. */
  blobServed(url: string): void {
    this.failing.delete(url);
  }

  list(): ProxyMember[] {
    return this.members.map((m) => ({ ...m }));
  }

  private async doRefresh(): Promise<void> {
    const urls = await this.expand();
    const check = this.options.check ?? ((url: string) => healthz(url, HEALTH_TIMEOUT_MS, this.dispatcher));
    const why = new Map<string, string>();
    const members = await Promise.all(
      urls.map(async (url) => ({
        url,
        healthy: await check(url).catch((err: unknown) => {
          // The reason matters for TLS: a certificate the CA does not vouch for is refused here.
          why.set(url, (err as { cause?: Error }).cause?.message ?? (err as Error).message);
          return false;
        }),
      })),
    );
    const before = new Map(this.members.map((m) => [m.url, m.healthy]));
    for (const m of members) {
      const was = before.get(m.url) ?? true;
      if (was === m.healthy) continue;
      if (m.healthy) this.logger.log({ msg: 'proxy is up', proxy: m.url });
      else this.logger.warn({ msg: 'proxy is down', proxy: m.url, reason: why.get(m.url) });
    }
    this.members = members;
  }

  private async expand(): Promise<string[]> {
    const resolve = this.options.resolve ?? resolveAll;
    const tlsNames = new Map<string, string>();
    const expanded: string[] = [];
    const single = this.options.proxies.length === 1;
    for (const raw of this.options.proxies) {
      const url = new URL(raw);
      const host = url.hostname.replace(/^\[|\]$/g, '');
      if (isIP(host)) {
        expanded.push(baseUrl(url));
        continue;
      }
      let ips: string[] = [];
      try {
        ips = await resolve(host);
      } catch (err) {
        this.logger.warn({ msg: 'cannot resolve proxy host', host, reason: (err as Error).message });
      }
      if (single && ips.length > 0) {
        // A headless Service: each address is one proxy.
        for (const ip of ips) {
          tlsNames.set(ip, host);
          const u = new URL(url);
          u.hostname = isIP(ip) === 6 ? `[${ip}]` : ip;
          expanded.push(baseUrl(u));
        }
      } else {
        expanded.push(baseUrl(url));
      }
    }
    this.tlsNames = tlsNames;
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

async function healthz(url: string, timeoutMs: number, dispatcher: Dispatcher): Promise<boolean> {
  const res = await request(`${url}/healthz`, {
    dispatcher,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    signal: AbortSignal.timeout(timeoutMs),
  });
  await res.body.dump();
  return res.statusCode === 200;
}
