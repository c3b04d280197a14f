import { isIPv4, isIPv6 } from 'node:net';

const EMPTY = Buffer.alloc(0);

/** What an answer tells about a peer (non-compact form). */
interface PeerView {
  readonly id: string;
  readonly ip: string;
  readonly port: number;
}

/** One peer as the tracker keeps it. */
interface PeerEntry {
  /** Its key in `Swarm.peers`: the address it is listed under (see `peerKey`). */
  key: string;
  id: string;
  ip: string;
  port: number;
  family: AddressBook;
  seeder: boolean;
  lastSeen: number;
  /** Its record's index in `family` (kept in step when records move). */
  slot: number;
}

/**
 * The compact addresses of one address family in one swarm, back to back in one buffer, plus a
 * seeder flag and the owning entry per record. Answers read only this buffer: sampling 50 peers
 * out of objects scattered over the heap was cache-miss bound (~0.6 µs per peer picked).
 */
class AddressBook {
  bytes: Buffer;
  seeder: Uint8Array;
  entries: PeerEntry[] = [];

  constructor(readonly recordSize: 6 | 18) {
    this.bytes = Buffer.allocUnsafe(recordSize * 16);
    this.seeder = new Uint8Array(16);
  }

  get count(): number {
    return this.entries.length;
  }

  add(entry: PeerEntry, compact: Buffer): void {
    const slot = this.entries.length;
    if (slot * this.recordSize >= this.bytes.length) {
      const bigger = Buffer.allocUnsafe(this.bytes.length * 2);
      this.bytes.copy(bigger);
      this.bytes = bigger;
      const flags = new Uint8Array(this.seeder.length * 2);
      flags.set(this.seeder);
      this.seeder = flags;
    }
    compact.copy(this.bytes, slot * this.recordSize);
    this.seeder[slot] = entry.seeder ? 1 : 0;
    entry.slot = slot;
    this.entries.push(entry);
  }

  /** Swap-remove: the last record moves into the freed slot. */
  remove(entry: PeerEntry): void {
    const last = this.entries.pop();
    if (!last) throw new Error('internal: removing a peer from an empty swarm table');
    if (last === entry) return;
    const size = this.recordSize;
    this.bytes.copy(this.bytes, entry.slot * size, last.slot * size, last.slot * size + size);
    this.seeder[entry.slot] = this.seeder[last.slot];
    this.entries[entry.slot] = last;
    last.slot = entry.slot;
  }

  setSeeder(entry: PeerEntry): void {
    this.seeder[entry.slot] = entry.seeder ? 1 : 0;
  }

  /**
   * Up to `want` records picked at random, skipping slot `skip` and (when `noSeeders`) seeders:
   * a random start and a random stride coprime with the count visit every record once in a
   * scrambled order, so each peer is equally likely and different askers see different peers,
   * with no writes and no allocation but the answer.
   */
  sample(want: number, skip: number, noSeeders: boolean, slots: number[]): void {
    const n = this.entries.length;
    if (n === 0 || want <= 0) return;
    let index = Math.floor(Math.random() * n);
    const step = coprimeStride(n);
    for (let k = 0; k < n && slots.length < want; k++) {
      if (index !== skip && !(noSeeders && this.seeder[index])) slots.push(index);
      index += step;
      if (index >= n) index -= n;
    }
  }

  /** The records at `slots` back to back (a compact peer string). */
  pack(slots: number[]): Buffer {
    if (slots.length === 0) return EMPTY;
    const size = this.recordSize;
    const out = Buffer.allocUnsafe(slots.length * size);
    let o = 0;
    for (const slot of slots) {
      // Byte stores, not Buffer#copy: for 6-byte records the call overhead of copy() dominated.
      for (let i = slot * size, end = i + size; i < end; i++) out[o++] = this.bytes[i];
    }
    return out;
  }
}

/** One swarm (info hash): peers in last-seen order plus an address book per family. */
class Swarm {
  /**
   * Keyed by listed address (`peerKey`), not by peer id. Insertion order is last-seen order: every
   * announce re-inserts, so the oldest peer is first.
   */
  readonly peers = new Map<string, PeerEntry>();
  readonly v4 = new AddressBook(6);
  readonly v6 = new AddressBook(18);
  seeders = 0;
  /** Completed downloads reported (`event=completed`), for scrapes. */
  downloaded = 0;
  lastActive = 0;
}

export interface AnnounceInput {
  infoHash: string;
  peerId: string;
  ip: string;
  port: number;
  left: number;
  event: 'started' | 'stopped' | 'completed' | 'update';
  numwant: number;
  /** False: also list the peers (non-compact answers). */
  compact?: boolean;
}

export interface AnnounceResult {
  complete: number;
  incomplete: number;
  /** Compact IPv4 peers (6 bytes each) and IPv6 peers (18 bytes each). */
  peers4: Buffer;
  peers6: Buffer;
  /** The same peers, only for non-compact requests (else empty). */
  list: readonly PeerView[];
}

export interface SwarmCounts {
  complete: number;
  incomplete: number;
  downloaded: number;
}

/**
 * The tracker's state: swarms of peers, with O(numwant) answers whatever the swarm size.
 * Peers are sampled at random (every peer equally likely), so a burst of 1,000 nodes joining at
 * once gets spread over the whole swarm instead of all dialling the same 50; seeders are not handed
 * to seeders. A swarm holds at most `maxPeers` peers (the least
 * recently seen leaves first); peers silent for `peerTtlMs` leave on the next `expire()`.
 *
 * An entry is bound to the address it lists: the announcing source IP (the caller passes the
 * socket's address, never a client-supplied `ip`) plus the announced port. Only announces from
 * that source IP for that port touch it; the peer id is a label, not the key. Keyed by peer id
 * (as before), any token holder that learnt a peer's id (it travels in every BitTorrent handshake)
 * could re-announce it from its own address to move the victim's listing there (hijack) or send
 * `stopped` with it to delist the victim (evict). Why a distinct entry rather than a refusal: a
 * refusal needs the id to be unique cluster-wide, so whoever announces an id first owns it —
 * a squatter could then lock out a restarted peer, and a peer whose IP changed would be refused
 * until its old entry expired; with address keys neither can happen, and an id announced from
 * another address gains nothing a fresh random id would not (any token holder may list itself).
 * Legitimate cases: a restarted agent (new random id) on the same ip:port takes over its old
 * entry instead of being listed twice; an agent whose IP changed gets a new entry and its old one
 * leaves by `peerTtlMs` (3 × the announce interval) like any silent peer. `stopped` removes an
 * entry only when it carries the entry's peer id (another process on the same host cannot delist it
 * without knowing the id).
 */
export class SwarmTable {
  private readonly swarms = new Map<string, Swarm>();

  constructor(
    private readonly maxPeers: number,
    private readonly peerTtlMs: number,
  ) {}

  announce(a: AnnounceInput, now = Date.now()): AnnounceResult {
    let swarm = this.swarms.get(a.infoHash);
    if (!swarm) {
      if (a.event === 'stopped') return { complete: 0, incomplete: 0, peers4: EMPTY, peers6: EMPTY, list: [] };
      this.swarms.set(a.infoHash, (swarm = new Swarm()));
    }
    swarm.lastActive = now;
    const seeder = a.left === 0;
    const key = peerKey(a.ip, a.port);
    let self = swarm.peers.get(key);
    if (a.event === 'stopped') {
      if (self && self.id === a.peerId) this.remove(swarm, self);
      return { complete: swarm.seeders, incomplete: swarm.peers.size - swarm.seeders, peers4: EMPTY, peers6: EMPTY, list: [] };
    }
    if (self) {
      swarm.peers.delete(key);
      // Same address, new id: the process there restarted (ids are random per process).
      self.id = a.peerId;
      if (self.seeder !== seeder) {
        swarm.seeders += seeder ? 1 : -1;
        self.seeder = seeder;
        self.family.setSeeder(self);
      }
      self.lastSeen = now;
      swarm.peers.set(key, self);
    } else {
      const compact = compactAddress(a.ip, a.port);
      if (compact) {
        if (swarm.peers.size >= this.maxPeers) this.remove(swarm, swarm.peers.values().next().value as PeerEntry);
        const family = compact.length === 6 ? swarm.v4 : swarm.v6;
        self = { key, id: a.peerId, ip: a.ip, port: a.port, family, seeder, lastSeen: now, slot: 0 };
        family.add(self, compact);
        swarm.peers.set(key, self);
        if (seeder) swarm.seeders++;
      }
    }
    if (a.event === 'completed') swarm.downloaded++;
    const slots4: number[] = [];
    swarm.v4.sample(a.numwant, self?.family === swarm.v4 ? self.slot : -1, seeder, slots4);
    const slots6: number[] = [];
    swarm.v6.sample(a.numwant - slots4.length, self?.family === swarm.v6 ? self.slot : -1, seeder, slots6);
    return {
      complete: swarm.seeders,
      incomplete: swarm.peers.size - swarm.seeders,
      peers4: swarm.v4.pack(slots4),
      peers6: swarm.v6.pack(slots6),
      list: a.compact === false ? [...slots4.map((i) => swarm.v4.entries[i]), ...slots6.map((i) => swarm.v6.entries[i])] : [],
    };
  }

  /** Scrape figures for one swarm (zeros when unknown). */
  counts(infoHash: string): SwarmCounts {
    const swarm = this.swarms.get(infoHash);
    return swarm
      ? { complete: swarm.seeders, incomplete: swarm.peers.size - swarm.seeders, downloaded: swarm.downloaded }
      : { complete: 0, incomplete: 0, downloaded: 0 };
  }

  infoHashes(): string[] {
    return [...this.swarms.keys()];
  }

  stats(): { swarms: number; peers: number } {
    let peers = 0;
    for (const s of this.swarms.values()) peers += s.peers.size;
    return { swarms: this.swarms.size, peers };
  }

  /** Drops peers silent for longer than the peer ttl; cost is the number dropped (+1 per swarm). */
  expire(now = Date.now()): number {
    const cutoff = now - this.peerTtlMs;
    let dropped = 0;
    for (const swarm of this.swarms.values()) {
      for (const peer of swarm.peers.values()) {
        if (peer.lastSeen > cutoff) break;
        this.remove(swarm, peer);
        dropped++;
      }
    }
    return dropped;
  }

  /** Deletes swarms with no announce since `cutoff` (ms epoch). */
  deleteIdle(cutoff: number): number {
    let deleted = 0;
    for (const [infoHash, swarm] of this.swarms) {
      if (swarm.lastActive > cutoff) continue;
      this.swarms.delete(infoHash);
      deleted++;
    }
    return deleted;
  }

  private remove(swarm: Swarm, peer: PeerEntry): void {
    swarm.peers.delete(peer.key);
    if (peer.seeder) swarm.seeders--;
    peer.family.remove(peer);
  }
}

/** The key of the entry listing ip:port (a short string: one concatenation per announce). */
function peerKey(ip: string, port: number): string {
  return `${port}/${ip}`;
}

/** A stride in [1, n) sharing no factor with n (1 when n ≤ 2), so stepping by it visits all n slots. */
function coprimeStride(n: number): number {
  if (n <= 2) return 1;
  for (;;) {
    const step = 1 + Math.floor(Math.random() * (n - 1));
    if (gcd(step, n) === 1) return step;
  }
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** The BEP 23 / BEP 7 compact address of ip:port; null for an address that is neither v4 nor v6. */
export function compactAddress(ip: string, port: number): Buffer | null {
  if (isIPv4(ip)) {
    const out = Buffer.allocUnsafe(6);
    const parts = ip.split('.');
    for (let i = 0; i < 4; i++) out[i] = Number(parts[i]);
    out.writeUInt16BE(port, 4);
    return out;
  }
  if (isIPv6(ip)) {
    const out = Buffer.alloc(18);
    const groups = expandIPv6(ip);
    for (let i = 0; i < 8; i++) out.writeUInt16BE(groups[i], i * 2);
    out.writeUInt16BE(port, 16);
    return out;
  }
  return null;
}

/** The 8 groups of an IPv6 address (handles `::` and an embedded dotted IPv4 tail). */
function expandIPv6(ip: string): number[] {
  let text = ip.split('%')[0];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const b = dotted[1].split('.').map(Number);
    text = text.slice(0, -dotted[1].length) + `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const parts = text.split('::');
  const head = parts[0];
  const tail = parts.length > 1 ? parts[1] : undefined;
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : Array<string>(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((g) => parseInt(g, 16));
}
