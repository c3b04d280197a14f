import type { IncomingMessage, ServerResponse } from 'node:http';
import { Server, type AnnounceParams } from 'bittorrent-tracker';

export interface TrackerServerOptions {
  /** Announce interval told to clients, seconds. */
  intervalSeconds: number;
  /** Peers remembered per swarm: must exceed the cluster's node count (library default 1000). */
  peersCacheLength: number;
  /** Return an Error to refuse an announce (its message becomes the bencoded failure reason). */
  admit?: (infoHash: string, params: AnnounceParams) => Error | undefined;
  /** Called for each refused or malformed request, for metrics and logs. */
  onWarning?: (err: Error) => void;
}

/**
 * A bittorrent-tracker server without its own listeners: the app routes `/announce` and `/scrape`
 * of its Fastify server here, so one port serves announces, health, admin and metrics.
 */
export class TrackerServer {
  readonly server: Server;

  constructor(options: TrackerServerOptions) {
    this.server = new Server({
      http: false,
      udp: false,
      ws: false,
      stats: false,
      interval: options.intervalSeconds * 1000,
      peersCacheLength: options.peersCacheLength,
      filter: (infoHash, params, cb) => cb(options.admit?.(infoHash, params) ?? null),
    });
    // bittorrent-tracker reports bad client input as 'warning'; an unhandled 'error' would crash us.
    this.server.on('warning', (err: Error) => options.onWarning?.(err));
    this.server.on('error', (err: Error) => options.onWarning?.(err));
  }

  handle(action: 'announce' | 'scrape', req: IncomingMessage, res: ServerResponse): void {
    this.server.onHttpRequest(req, res, { action });
  }

  /** Swarm count and peer count, for gauges and readiness details. */
  stats(): { swarms: number; peers: number } {
    const swarms = Object.values(this.server.torrents);
    return { swarms: swarms.length, peers: swarms.reduce((n, s) => n + s.peers.length, 0) };
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
