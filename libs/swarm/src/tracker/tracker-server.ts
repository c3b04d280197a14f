import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import bencode from 'bencode';
import { Server, type AnnounceParams } from 'bittorrent-tracker';

/** How a tracker request ended (metrics label). */
export type TrackerResult = 'ok' | 'refused_token' | 'refused_unregistered' | 'rate_limited' | 'malformed';

export interface TrackerServerOptions {
  /** Announce interval told to clients, seconds. */
  intervalSeconds: number;
  /** Peers remembered per swarm: must exceed the cluster's node count (library default 1000). */
  peersCacheLength: number;
  /** A peer silent for this long leaves its swarm, seconds (default 3 × interval). */
  peersCacheTtlSeconds?: number;
  /** A swarm nobody announced to for this long is deleted, seconds (default 3 × interval). */
  idleSwarmSeconds?: number;
  /** When set, announces and scrapes must carry it as the `token` query parameter. */
  token?: string;
  /** When true, announces are accepted only for info hashes registered with `register()`. */
  requireRegistration?: boolean;
  /** Per-client announce limit: false refuses the announce (`rate_limited`). */
  allowClient?: (ip: string) => boolean;
  /** Called once per request with its outcome, for metrics. */
  onResult?: (action: 'announce' | 'scrape', result: TrackerResult) => void;
  /** Called for each refused or malformed request, for debug logs. */
  onWarning?: (err: Error) => void;
}

const INFO_HASH = /^[0-9a-f]{40}$/;

/**
 * A bittorrent-tracker server without its own listeners: the app routes `/announce` and `/scrape`
 * of its Fastify server here, so one port serves announces, health, admin and metrics.
 * Replicas share nothing: clients announce to every tracker URL they know, so each replica sees
 * every peer, and losing one loses nothing.
 */
export class TrackerServer {
  readonly server: Server;
  private readonly tokenDigest?: Buffer;
  private readonly lastSeen = new Map<string, number>();
  private readonly registered = new Set<string>();
  private readonly outcome = new WeakMap<IncomingMessage, TrackerResult>();
  private readonly reaper: NodeJS.Timeout;
  private readonly idleMs: number;

  constructor(private readonly options: TrackerServerOptions) {
    this.tokenDigest = options.token ? sha256(options.token) : undefined;
    this.idleMs = (options.idleSwarmSeconds || 3 * options.intervalSeconds) * 1000;
    this.server = new Server({
      http: false,
      udp: false,
      ws: false,
      stats: false,
      interval: options.intervalSeconds * 1000,
      peersCacheLength: options.peersCacheLength,
      peersCacheTtl: (options.peersCacheTtlSeconds || 3 * options.intervalSeconds) * 1000,
      filter: (infoHash, params, cb) => cb(this.admit(infoHash, params)),
    });
    // bittorrent-tracker reports bad client input as 'warning'; an unhandled 'error' would crash us.
    this.server.on('warning', (err: Error) => options.onWarning?.(err));
    this.server.on('error', (err: Error) => options.onWarning?.(err));
    this.reaper = setInterval(() => this.reapIdleSwarms(), Math.min(this.idleMs, 60_000));
    this.reaper.unref();
  }

  /** Answers one HTTP announce or scrape (bencoded), after the token and rate checks. */
  handle(action: 'announce' | 'scrape', req: IncomingMessage, res: ServerResponse): void {
    const token = new URLSearchParams(req.url?.split('?')[1] ?? '').get('token') ?? undefined;
    if (!this.tokenOk(token)) return this.refuse(action, res, 'refused_token', 'swarm token missing or wrong');
    if (action === 'announce') {
      const ip = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
      if (this.options.allowClient && !this.options.allowClient(ip)) {
        return this.refuse(action, res, 'rate_limited', 'too many announces from this address; retry later');
      }
    }
    res.once('finish', () => this.options.onResult?.(action, this.outcome.get(req) ?? (action === 'scrape' ? 'ok' : 'malformed')));
    if (action === 'scrape') this.outcome.set(req, 'ok');
    this.server.onHttpRequest(req, res, { action });
  }

  /** Registers a swarm (a proxy about to seed it); re-registering keeps it from being reaped. */
  register(infoHash: string): boolean {
    const hash = infoHash.toLowerCase();
    if (!INFO_HASH.test(hash)) return false;
    this.registered.add(hash);
    this.lastSeen.set(hash, Date.now());
    return true;
  }

  /** True when a bearer of `token` may use the tracker (always true without a configured token). */
  tokenOk(token: string | undefined): boolean {
    if (!this.tokenDigest) return true;
    return token !== undefined && timingSafeEqual(sha256(token), this.tokenDigest);
  }

  /** Swarm count and peer count, for gauges and readiness details. */
  stats(): { swarms: number; peers: number; registered: number } {
    const swarms = Object.values(this.server.torrents);
    return { swarms: swarms.length, peers: swarms.reduce((n, s) => n + s.peers.length, 0), registered: this.registered.size };
  }

  /** Deletes swarms (and registrations) idle for longer than the idle timeout; returns how many. */
  reapIdleSwarms(now = Date.now()): number {
    const cutoff = now - this.idleMs;
    let reaped = 0;
    for (const infoHash of Object.keys(this.server.torrents)) {
      if ((this.lastSeen.get(infoHash) ?? 0) > cutoff) continue;
      delete this.server.torrents[infoHash];
      reaped++;
    }
    for (const [infoHash, at] of this.lastSeen) {
      if (at > cutoff) continue;
      this.lastSeen.delete(infoHash);
      this.registered.delete(infoHash);
    }
    return reaped;
  }

  close(): Promise<void> {
    clearInterval(this.reaper);
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private admit(infoHash: string, params: AnnounceParams): Error | null {
    const req = params['httpReq'] as IncomingMessage | undefined;
    if (this.options.requireRegistration && !this.registered.has(infoHash)) {
      if (req) this.outcome.set(req, 'refused_unregistered');
      return new Error('unknown swarm: no proxy registered this info hash');
    }
    if (req) this.outcome.set(req, 'ok');
    this.lastSeen.set(infoHash, Date.now());
    return null;
  }

  private refuse(action: 'announce' | 'scrape', res: ServerResponse, result: TrackerResult, reason: string): void {
    this.options.onResult?.(action, result);
    this.options.onWarning?.(new Error(reason));
    res.setHeader('Content-Type', 'text/plain');
    res.end(Buffer.from(bencode.encode({ 'failure reason': reason })));
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
