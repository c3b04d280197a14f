import { describe, expect, it } from 'vitest';
import { BLOB_FAILURES_BEFORE_DOWN, ProxyRing } from './proxy-ring.js';
import { rendezvousOrder } from './rendezvous.js';

const digests = Array.from({ length: 5000 }, (_, i) => `sha256:${i.toString(16).padStart(64, '0')}`);
const proxies = Array.from({ length: 10 }, (_, i) => `http://192.0.2.${i + 1}:5005`);

async function ring(list: string[], healthy: (url: string) => boolean = () => true, resolve?: (h: string) => Promise<string[]>) {
  const r = new ProxyRing({ proxies: list, refreshSeconds: 3600, check: async (u) => healthy(u), resolve });
  await r.refresh();
  return r;
}

describe(ProxyRing.name, () => {
  it('assigns the same owner whatever the order proxies are listed in', async () => {
    const a = await ring(proxies);
    const b = await ring([...proxies].reverse());
    for (const d of digests.slice(0, 500)) expect(b.ownersFor(d)).toEqual(a.ownersFor(d));
  });

  it('moves only the digests of a proxy that leaves, each to its next choice', async () => {
    const all = await ring(proxies);
    const gone = proxies[3];
    const fewer = await ring(proxies.filter((p) => p !== gone));
    let moved = 0;
    for (const d of digests) {
      const before = all.ownersFor(d);
      const after = fewer.ownersFor(d);
      if (before[0] === gone) {
        moved++;
        expect(after[0]).toBe(before[1]);
      } else {
        expect(after[0]).toBe(before[0]);
      }
    }
    expect(moved).toBeGreaterThan(digests.length / 10 / 2);
    expect(moved).toBeLessThan((digests.length / 10) * 1.5);
  });

  it('spreads digests evenly', async () => {
    const r = await ring(proxies);
    const counts = new Map<string, number>();
    for (const d of digests) counts.set(r.ownersFor(d)[0], (counts.get(r.ownersFor(d)[0]) ?? 0) + 1);
    expect(counts.size).toBe(10);
    for (const n of counts.values()) expect(Math.abs(n - 500)).toBeLessThan(500 * 0.2);
  });

  it('ranks unhealthy and marked-down proxies last', async () => {
    const r = await ring(proxies, (u) => u !== proxies[0]);
    const d = digests.find((x) => rendezvousOrder(proxies, x)[0] === proxies[0])!;
    expect(r.ownersFor(d)[0]).not.toBe(proxies[0]);
    expect(r.ownersFor(d).at(-1)).toBe(proxies[0]);
    const owner = r.ownersFor(d)[0];
    r.markDown(owner);
    expect(r.ownersFor(d).slice(-2)).toContain(owner);
    expect(r.ownersFor(d)[0]).not.toBe(owner);
  });

  it('keeps a proxy that fails one blob (even repeatedly) in the ring; ranks it down after several blobs in a row (issue #12 item 6)', async () => {
    const r = await ring(proxies);
    const owned = digests.filter((x) => rendezvousOrder(proxies, x)[0] === proxies[0]);
    r.blobFailed(proxies[0], owned[0]);
    r.blobFailed(proxies[0], owned[0]);
    r.blobFailed(proxies[0], owned[0]);
    expect(r.ownersFor(owned[1])[0]).toBe(proxies[0]);
    // A success in between ends the run.
    r.blobFailed(proxies[0], owned[1]);
    r.blobServed(proxies[0]);
    for (let i = 2; i < 2 + BLOB_FAILURES_BEFORE_DOWN - 1; i++) r.blobFailed(proxies[0], owned[i]);
    expect(r.ownersFor(owned[9])[0]).toBe(proxies[0]);
    // Distinct blobs failing with no success between: 5xx for everything, ranked down.
    r.blobFailed(proxies[0], owned[8]);
    expect(r.ownersFor(owned[9])[0]).not.toBe(proxies[0]);
    expect(r.ownersFor(owned[9]).at(-1)).toBe(proxies[0]);
  });

  it('checks TLS certificates of proxies expanded from a DNS name against that name, not the pod address', async () => {
    const r = await ring(
      ['https://p2p-proxy.ns.svc:5005'],
      () => true,
      async () => ['198.51.100.7'],
    );
    const names = (r as unknown as { tlsNames: Map<string, string> }).tlsNames;
    expect(names.get('198.51.100.7')).toBe('p2p-proxy.ns.svc');
    expect(r.list().map((m) => m.url)).toEqual(['https://198.51.100.7:5005']);
    r.stop();
  });

  it('expands a single DNS name into one member per address', async () => {
    const r = await ring(
      ['http://p2p-proxy.ns.svc:5005'],
      () => true,
      async () => ['198.51.100.2', '198.51.100.1'],
    );
    expect(
      r
        .list()
        .map((m) => m.url)
        .sort(),
    ).toEqual(['http://198.51.100.1:5005', 'http://198.51.100.2:5005']);
  });

  it('refuses with a typed error when no proxy is known', async () => {
    const r = await ring(
      ['http://nowhere.invalid:5005'],
      () => true,
      async () => [],
    );
    expect(r.list()).toHaveLength(1);
    const empty = new ProxyRing({ proxies: [], refreshSeconds: 1, check: async () => true });
    await empty.refresh();
    expect(() => empty.ownersFor(digests[0])).toThrow(/no proxy/);
  });
});
