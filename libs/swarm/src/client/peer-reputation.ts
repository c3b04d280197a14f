/** What the reputation needs of a wire (webtorrent's Wire satisfies it). */
export interface PeerWire {
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly peerId: string | null;
}

interface Score {
  good: number;
  bad: number;
}

/**
 * Per torrent: which peers sent blocks of each piece not yet verified, and their record. webtorrent
 * re-requests a piece that fails SHA-1 but never drops the sender, so one lying peer can keep a
 * swarm busy with garbage for ever. A peer is banned once it took part in `maxBad` failed pieces
 * and in more failed than verified ones (an honest peer that shared a piece with a liar has verified
 * pieces to show). Bans are by peer id and by address:port, never by IP alone (several peers may
 * share one, as on loopback).
 */
export class PeerReputation<W extends PeerWire = PeerWire> {
  private readonly contributors = new Map<number, Set<W>>();
  private readonly scores = new Map<W, Score>();
  private readonly banned = new Set<string>();

  constructor(
    private readonly onBan: (wire: W, reason: string) => void,
    /**
     * Peers never banned: the ones this node dialled itself as direct peers (the owning proxy's
     * address:port from the ring). A failed piece shared with a liar must not cost us the seed, and
     * an address we dialled cannot be claimed by another peer the way a peer id can.
     */
    private readonly isTrusted: (wire: W) => boolean = () => false,
    private readonly maxBad = 2,
  ) {}

  /** True when this wire's peer was banned before (a reconnect): drop it at once. */
  isBanned(wire: W): boolean {
    return keys(wire).some((k) => this.banned.has(k));
  }

  /** A block of piece `index` arrived from `wire`. */
  received(wire: W, index: number): void {
    let set = this.contributors.get(index);
    if (!set) this.contributors.set(index, (set = new Set()));
    set.add(wire);
  }

  /** Piece `index` hashed right: everyone who sent part of it earns credit. */
  verified(index: number): void {
    for (const wire of this.contributors.get(index) ?? []) this.score(wire).good++;
    this.contributors.delete(index);
  }

  /** Piece `index` failed SHA-1: everyone who sent part of it gets a strike; liars get banned. */
  failed(index: number): void {
    for (const wire of this.contributors.get(index) ?? []) {
      const s = this.score(wire);
      s.bad++;
      if (s.bad >= this.maxBad && s.bad > s.good && !this.isTrusted(wire) && !this.isBanned(wire)) {
        for (const k of keys(wire)) this.banned.add(k);
        this.onBan(wire, `${s.bad} pieces failed verification, ${s.good} verified`);
      }
    }
    this.contributors.delete(index);
  }

  /**
   * Piece `index` failed, but with blocks from several peers nobody can be blamed (an honest peer
   * that shared a piece with a liar would take its strikes): forget who sent it, strike no one.
   * The session fetches such a piece from a single peer next time.
   */
  inconclusive(index: number): void {
    this.contributors.delete(index);
  }

  /** Forgets a closed wire's bookkeeping (its ban, if any, stays). */
  closed(wire: W): void {
    this.scores.delete(wire);
    for (const set of this.contributors.values()) set.delete(wire);
  }

  private score(wire: W): Score {
    let s = this.scores.get(wire);
    if (!s) this.scores.set(wire, (s = { good: 0, bad: 0 }));
    return s;
  }
}

function keys(wire: PeerWire): string[] {
  const out = [`addr:${wire.remoteAddress}:${wire.remotePort}`];
  if (wire.peerId) out.push(`id:${wire.peerId}`);
  return out;
}
