import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';

/** Resolves a host name to every address it has (a headless Service has one per ready pod). */
export type HostResolver = (host: string) => Promise<string[]>;

const resolveAllAddresses: HostResolver = async (host) => (await lookup(host, { all: true })).map((a) => a.address).sort();

/**
 * Expands URLs whose host is a DNS name into one URL per address it resolves to, keeping path and
 * query. Trackers need this: clients announce to every URL, so a headless Service name must become
 * every replica, not whichever one the name happens to resolve to. A name that cannot be resolved
 * is kept as it is (it may resolve later, and the library will retry it).
 */
export async function expandServiceUrls(urls: readonly string[], resolve: HostResolver = resolveAllAddresses): Promise<string[]> {
  const out: string[] = [];
  for (const raw of urls) {
    const url = new URL(raw);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    let ips: string[] = [];
    if (!isIP(host)) ips = await resolve(host).catch(() => []);
    if (ips.length === 0) {
      out.push(raw);
      continue;
    }
    for (const ip of ips) {
      const u = new URL(raw);
      u.hostname = isIP(ip) === 6 ? `[${ip}]` : ip;
      out.push(u.toString());
    }
  }
  return [...new Set(out)];
}
