import type { Bitfield } from './bitfield.js';

/** The reader's window: the piece it waits on and the ones after it. */
export interface ReaderWindow {
  first: number;
  last: number;
}

/**
 * Which piece a peer should send us next. Work is per piece started (a few per 4 MiB), never per
 * block, and independent of the number of peers: availability counts are kept up to date from
 * bitfields and haves instead of being rescanned.
 *
 * Order: the piece the reader waits on (time to first byte, no stall at the frontier), then the
 * rest of the reader's window rarest first, then rarest first overall. Ties are broken at random
 * so agents that start together spread over different pieces they can then trade.
 */
export class PiecePicker {
  /** How many connected peers have each piece. */
  readonly availability: Uint16Array;

  constructor(readonly pieceCount: number) {
    this.availability = new Uint16Array(pieceCount);
  }

  addBitfield(bits: Bitfield): void {
    for (const i of bits) this.availability[i]++;
  }

  removeBitfield(bits: Bitfield): void {
    for (const i of bits) if (this.availability[i] > 0) this.availability[i]--;
  }

  addHave(index: number): void {
    this.availability[index]++;
  }

  /**
   * The next piece to start from a peer that has `peerHas`, among pieces `startable(i)` says are
   * still to fetch and not being fetched; -1 when the peer has none of them.
   */
  pick(peerHas: Bitfield, startable: (index: number) => boolean, window?: ReaderWindow, random: () => number = Math.random): number {
    if (window) {
      const { first, last } = window;
      if (first < this.pieceCount && peerHas.get(first) && startable(first)) return first;
      const inWindow = this.rarest(peerHas, startable, first + 1, Math.min(last, this.pieceCount - 1), random);
      if (inWindow >= 0) return inWindow;
    }
    return this.rarest(peerHas, startable, 0, this.pieceCount - 1, random);
  }

  private rarest(peerHas: Bitfield, startable: (index: number) => boolean, from: number, to: number, random: () => number): number {
    const span = to - from + 1;
    if (span <= 0) return -1;
    const offset = Math.floor(random() * span);
    let best = -1;
    let bestCount = Infinity;
    for (let k = 0; k < span; k++) {
      const i = from + ((offset + k) % span);
      const count = this.availability[i];
      if (count < bestCount && peerHas.get(i) && startable(i)) {
        best = i;
        bestCount = count;
        if (count <= 1) break;
      }
    }
    return best;
  }
}
