// Just the part of bittorrent-tracker's untyped API this project uses.
declare module 'bittorrent-tracker' {
  import { EventEmitter } from 'node:events';
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export interface AnnounceParams {
    info_hash: string;
    peer_id: string;
    ip: string;
    port: number;
    event?: string;
    left: number;
    [param: string]: unknown;
  }

  export interface TrackerServerOptions {
    http?: boolean;
    udp?: boolean;
    ws?: boolean;
    stats?: boolean;
    trustProxy?: boolean;
    interval?: number;
    peersCacheLength?: number;
    peersCacheTtl?: number;
    filter?: (infoHash: string, params: AnnounceParams, cb: (err?: Error | null) => void) => void;
  }

  export interface TrackerSwarm {
    complete: number;
    incomplete: number;
    peers: { length: number; keys: string[]; peek(key: string): unknown; remove(key: string): void };
  }

  export class Server extends EventEmitter {
    constructor(opts?: TrackerServerOptions);
    torrents: Record<string, TrackerSwarm>;
    intervalMs: number;
    onHttpRequest(req: IncomingMessage, res: ServerResponse, opts?: { action?: 'announce' | 'scrape'; trustProxy?: boolean }): void;
    close(cb?: () => void): void;
  }
  export interface TrackerClientOptions {
    infoHash: string;
    peerId: string;
    announce: string[];
    port: number;
    getAnnounceOpts?: () => Record<string, unknown>;
  }

  export interface TrackerUpdate {
    announce: string;
    complete: number;
    incomplete: number;
  }

  /** Announces one torrent to its trackers (used by tests and tools; webtorrent has its own). */
  export class Client extends EventEmitter {
    constructor(opts: TrackerClientOptions);
    start(opts?: Record<string, unknown>): void;
    update(opts?: Record<string, unknown>): void;
    stop(opts?: Record<string, unknown>): void;
    scrape(opts?: Record<string, unknown>): void;
    destroy(cb?: () => void): void;
  }

  export default Client;
}
