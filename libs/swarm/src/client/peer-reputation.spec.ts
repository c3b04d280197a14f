import { describe, expect, it } from 'vitest';
import { PeerReputation, type PeerWire } from './peer-reputation.js';

const wire = (id: string, port: number): PeerWire => ({ remoteAddress: '127.0.0.1', remotePort: port, peerId: id });

describe(PeerReputation.name, () => {
  it('bans a peer whose pieces keep failing, not the honest peer that shared one with it', () => {
    const banned: string[] = [];
    const rep = new PeerReputation<PeerWire>((w) => banned.push(w.peerId!));
    const liar = wire('liar', 1);
    const honest = wire('honest', 2);
    for (const index of [0, 1, 2]) {
      rep.received(honest, index);
      rep.verified(index);
    }
    rep.received(liar, 3);
    rep.received(honest, 3);
    rep.failed(3);
    rep.received(liar, 4);
    rep.failed(4);
    expect(banned).toEqual(['liar']);
    expect(rep.isBanned(liar)).toBe(true);
    expect(rep.isBanned(honest)).toBe(false);
  });

  it('recognises a banned peer reconnecting from another port by its peer id, and never bans a whole IP', () => {
    const rep = new PeerReputation<PeerWire>(() => undefined);
    const liar = wire('liar', 1);
    for (const index of [0, 1]) {
      rep.received(liar, index);
      rep.failed(index);
    }
    expect(rep.isBanned(wire('liar', 9))).toBe(true);
    expect(rep.isBanned(wire('other', 9))).toBe(false);
  });

  it('gives one failed piece the benefit of the doubt', () => {
    const banned: string[] = [];
    const rep = new PeerReputation<PeerWire>((w) => banned.push(w.peerId!));
    rep.received(wire('flaky', 1), 0);
    rep.failed(0);
    expect(banned).toEqual([]);
  });

  it('never bans a trusted direct peer (the owning proxy) that shared failed pieces with a liar', () => {
    const banned: string[] = [];
    const proxy = wire('proxy', 6882);
    const rep = new PeerReputation<PeerWire>(
      (w) => banned.push(w.peerId!),
      (w) => w === proxy,
    );
    const liar = wire('liar', 1);
    for (const index of [0, 1, 2]) {
      rep.received(liar, index);
      rep.received(proxy, index);
      rep.failed(index);
    }
    expect(banned).toEqual(['liar']);
  });

  it('blames nobody for an inconclusive failure (a piece with several senders): only pieces from one peer count', () => {
    const banned: string[] = [];
    const rep = new PeerReputation<PeerWire>((w) => banned.push(w.peerId!));
    const liar = wire('liar', 1);
    const honest = wire('honest', 2);
    for (const index of [0, 1, 2]) {
      rep.received(liar, index);
      rep.received(honest, index);
      rep.inconclusive(index);
    }
    expect(banned).toEqual([]);
    // The session fetches those pieces from one peer each now.
    for (const index of [0, 1]) {
      rep.received(liar, index);
      rep.failed(index);
    }
    rep.received(honest, 2);
    rep.verified(2);
    expect(banned).toEqual(['liar']);
  });
});
