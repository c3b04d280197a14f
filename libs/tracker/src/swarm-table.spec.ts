import { describe, expect, it } from 'vitest';
import { compactAddress, SwarmTable, type AnnounceInput } from './swarm-table.js';

const HASH = 'aa'.repeat(20);
const id = (n: number) => String(n).padStart(20, '0');
const peer = (n: number, over: Partial<AnnounceInput> = {}): AnnounceInput => ({
  infoHash: HASH,
  peerId: id(n),
  ip: `10.0.${n >> 8}.${n & 255}`,
  port: 6881,
  left: 100,
  event: 'started',
  numwant: 50,
  ...over,
});
/** The ip:port pairs in a compact IPv4 peer string. */
const addrs = (b: Buffer) =>
  Array.from({ length: b.length / 6 }, (_, i) => `${[...b.subarray(i * 6, i * 6 + 4)].join('.')}:${b.readUInt16BE(i * 6 + 4)}`);

describe(SwarmTable.name, () => {
  it('hands out other peers, never the asker, in compact form', () => {
    const t = new SwarmTable(100, 60_000);
    expect(t.announce(peer(1)).peers4.length).toBe(0);
    const r = t.announce(peer(2));
    expect(addrs(r.peers4)).toEqual(['10.0.0.1:6881']);
    expect(r).toMatchObject({ complete: 0, incomplete: 2 });
  });

  it('samples numwant distinct peers uniformly from a large swarm', () => {
    const t = new SwarmTable(5000, 60_000);
    for (let i = 1; i <= 1000; i++) t.announce(peer(i));
    const seen = new Map<string, number>();
    for (let k = 0; k < 200; k++) {
      const got = addrs(t.announce(peer(1, { event: 'update' })).peers4);
      expect(got).toHaveLength(50);
      expect(new Set(got).size).toBe(50);
      expect(got).not.toContain('10.0.0.1:6881');
      for (const a of got) seen.set(a, (seen.get(a) ?? 0) + 1);
    }
    // 10,000 picks over 999 peers: nearly every peer is handed out, none hugely over-represented.
    expect(seen.size).toBeGreaterThan(990);
    expect(Math.max(...seen.values())).toBeLessThan(40);
  });

  it('does not hand seeders to seeders and counts complete/incomplete', () => {
    const t = new SwarmTable(100, 60_000);
    t.announce(peer(1, { left: 0 }));
    t.announce(peer(2, { left: 0 }));
    t.announce(peer(3));
    const seederView = t.announce(peer(4, { left: 0 }));
    expect(addrs(seederView.peers4)).toEqual(['10.0.0.3:6881']);
    expect(seederView).toMatchObject({ complete: 3, incomplete: 1 });
    // A leecher that completes becomes a seeder; `completed` counts as a download.
    t.announce(peer(3, { left: 0, event: 'completed' }));
    expect(t.counts(HASH)).toEqual({ complete: 4, incomplete: 0, downloaded: 1 });
  });

  it('removes stopped peers; a peer listening on a new port is listed there too until its old entry expires', () => {
    const t = new SwarmTable(100, 60_000);
    t.announce(peer(1), 0);
    t.announce(peer(2), 0);
    t.announce(peer(1, { event: 'stopped' }), 0);
    expect(addrs(t.announce(peer(3), 0).peers4)).toEqual(['10.0.0.2:6881']);
    t.announce(peer(2, { port: 7000 }), 1000);
    expect(addrs(t.announce(peer(4), 1000).peers4).sort()).toEqual(['10.0.0.2:6881', '10.0.0.2:7000', '10.0.0.3:6881']);
    expect(t.expire(60_500)).toBe(2);
    expect(addrs(t.announce(peer(5), 60_500).peers4).sort()).toEqual(['10.0.0.2:7000', '10.0.0.4:6881']);
  });

  it('binds an entry to its source address: the same peer id from another address neither moves nor stops it (issue #12 item 10)', () => {
    const t = new SwarmTable(100, 60_000);
    t.announce(peer(1, { left: 0 }));
    // A token holder that learnt peer 1's id announces it from its own address, then stops it.
    const hijack = t.announce(peer(1, { ip: '10.9.9.9', port: 6999 }));
    expect(addrs(hijack.peers4)).toEqual(['10.0.0.1:6881']);
    expect(t.stats()).toEqual({ swarms: 1, peers: 2 });
    t.announce(peer(1, { ip: '10.9.9.9', port: 6999, event: 'stopped' }));
    // A stop naming the victim's port from another address finds no entry of its own to remove.
    t.announce(peer(1, { ip: '10.9.9.9', event: 'stopped' }));
    const seen = t.announce(peer(3));
    expect(addrs(seen.peers4)).toEqual(['10.0.0.1:6881']);
    expect(seen).toMatchObject({ complete: 1, incomplete: 1 });
    // The victim's own stop still works.
    t.announce(peer(1, { event: 'stopped' }));
    expect(addrs(t.announce(peer(3)).peers4)).toEqual([]);
  });

  it('a restarted peer (new id, same address) takes over its entry; a stop must carry the id listed there', () => {
    const t = new SwarmTable(100, 60_000);
    t.announce(peer(1));
    t.announce(peer(1, { peerId: 'restarted-peer-id-001' }));
    expect(t.stats()).toEqual({ swarms: 1, peers: 1 });
    const listed = t.announce({ ...peer(2), compact: false }).list;
    expect(listed).toEqual([expect.objectContaining({ ip: '10.0.0.1', port: 6881, id: 'restarted-peer-id-001' })]);
    // The old process's id no longer stops it.
    t.announce(peer(1, { event: 'stopped' }));
    expect(t.stats().peers).toBe(2);
    t.announce(peer(1, { peerId: 'restarted-peer-id-001', event: 'stopped' }));
    expect(t.stats().peers).toBe(1);
  });

  it('caps a swarm at maxPeers, dropping the least recently seen', () => {
    const t = new SwarmTable(3, 60_000);
    for (let i = 1; i <= 3; i++) t.announce(peer(i));
    t.announce(peer(1, { event: 'update' }));
    t.announce(peer(4));
    expect(addrs(t.announce(peer(1, { event: 'update' })).peers4).sort()).toEqual(['10.0.0.3:6881', '10.0.0.4:6881']);
  });

  it('expires silent peers and deletes idle swarms', () => {
    const t = new SwarmTable(100, 1000);
    t.announce(peer(1), 0);
    t.announce(peer(2), 900);
    t.announce(peer(1, { infoHash: 'bb'.repeat(20) }), 0);
    expect(t.expire(1500)).toBe(2);
    expect(t.stats()).toEqual({ swarms: 2, peers: 1 });
    expect(t.deleteIdle(800)).toBe(1);
    expect(t.infoHashes()).toEqual([HASH]);
  });

  it('answers IPv6 peers in peers6 and encodes addresses per BEP 23 / BEP 7', () => {
    const t = new SwarmTable(100, 60_000);
    t.announce(peer(1, { ip: 'fd00::1' }));
    const r = t.announce(peer(2));
    expect(r.peers4.length).toBe(0);
    expect(r.peers6.toString('hex')).toBe(`fd00${'0'.repeat(24)}0001${(6881).toString(16).padStart(4, '0')}`);
    expect(compactAddress('::ffff:1.2.3.4', 1)!.toString('hex')).toBe(`${'0'.repeat(20)}ffff010203040001`);
    expect(compactAddress('not-an-ip', 1)).toBeNull();
  });
});
