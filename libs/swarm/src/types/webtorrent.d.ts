// Just the part of webtorrent 3's untyped API this project uses.
declare module 'webtorrent' {
  import { EventEmitter } from 'node:events';
  import type { Readable } from 'node:stream';

  export interface WebTorrentOptions {
    dht?: boolean;
    lsd?: boolean;
    utp?: boolean;
    utPex?: boolean;
    natUpnp?: boolean;
    natPmp?: boolean;
    webSeeds?: boolean;
    tracker?: false | Record<string, unknown>;
    torrentPort?: number;
    maxConns?: number;
    secure?: 0 | 1 | 2;
    downloadLimit?: number;
    uploadLimit?: number;
    peerId?: string;
  }

  export interface AddTorrentOptions {
    path?: string;
    skipVerify?: boolean;
    storeCacheSlots?: number;
    uploads?: number;
    announce?: string[];
    private?: boolean;
    strategy?: 'sequential' | 'rarest';
    destroyStoreOnDestroy?: boolean;
    alwaysChokeSeeders?: boolean;
  }

  export interface TorrentFile {
    readonly name: string;
    readonly path: string;
    readonly length: number;
    readonly done: boolean;
    createReadStream(opts?: { start?: number; end?: number }): Readable;
  }

  export interface Wire extends EventEmitter {
    readonly remoteAddress: string;
    readonly remotePort: number;
    /** Remote peer id (hex), set once the handshake arrived. */
    readonly peerId: string | null;
    readonly downloaded: number;
    readonly uploaded: number;
    readonly type: string;
    destroy(): void;
  }

  export interface TrackerClient extends EventEmitter {
    update(opts?: Record<string, unknown>): void;
  }

  export interface Discovery extends EventEmitter {
    tracker: TrackerClient | null;
  }

  export interface Torrent extends EventEmitter {
    readonly infoHash: string;
    readonly name: string;
    readonly length: number;
    readonly pieceLength: number;
    /** Verified pieces (set after the piece is written to the store). */
    readonly bitfield: { get(index: number): boolean };
    readonly files: TorrentFile[];
    readonly wires: Wire[];
    readonly numPeers: number;
    readonly downloaded: number;
    readonly uploaded: number;
    readonly received: number;
    readonly downloadSpeed: number;
    readonly uploadSpeed: number;
    readonly progress: number;
    readonly done: boolean;
    readonly ready: boolean;
    readonly destroyed: boolean;
    readonly path: string;
    readonly discovery: Discovery | null;
    addPeer(peer: string): boolean;
    /** Internal but stable across webtorrent 2-3: a (stream) selection with a priority. */
    _select(start: number, end: number, priority: number, notify: (() => void) | undefined, isStreamSelection: boolean): void;
    _deselect(start: number, end: number, isStreamSelection: boolean): void;
    /** Public: removes pieces start..end (inclusive) from the non-stream selection. */
    deselect(start: number, end: number): void;
    destroy(opts?: { destroyStore?: boolean }, cb?: (err?: Error | null) => void): void;
  }

  /** The part of speed-limiter's ThrottleGroup we touch: the token bucket its throttles draw from. */
  export interface ThrottleGroupLike {
    bucket: unknown;
  }

  export default class WebTorrent extends EventEmitter {
    constructor(opts?: WebTorrentOptions);
    readonly torrents: Torrent[];
    readonly torrentPort: number;
    readonly listening: boolean;
    readonly destroyed: boolean;
    add(torrentId: Uint8Array | string, opts?: AddTorrentOptions, ontorrent?: (torrent: Torrent) => void): Torrent;
    get(torrentId: string): Promise<Torrent | null>;
    address(): { address: string; family: string; port: number } | null;
    throttleDownload(rate: number): boolean | void;
    throttleUpload(rate: number): boolean | void;
    /** speed-limiter groups every wire's throttle draws from (see client/shared-throttle.ts). */
    readonly throttleGroups: { down: ThrottleGroupLike; up: ThrottleGroupLike };
    destroy(cb?: (err?: Error | null) => void): void;
  }
}
