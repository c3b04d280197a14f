import type { Counter, Gauge, Histogram } from 'prom-client';
import type { ByteSource, MetricsService } from '#ops';

export interface TorrentPeersSnapshot {
  infoHash: string;
  peers: number;
  state: 'seeding' | 'downloading';
}

/** Swarm metrics, registered once per process on the app's MetricsService. */
export class SwarmMetrics {
  readonly bytes: Counter<'source'>;
  readonly uploaded: Counter;
  readonly banned: Counter;
  readonly pullDuration: Histogram<'result'>;
  readonly torrents: Gauge<'state'>;
  readonly peers: Gauge<'state'>;
  readonly pieceFailures: Counter;
  readonly corruptFiles: Counter;
  readonly discarded: Counter<'reason'>;
  private snapshot: () => TorrentPeersSnapshot[] = () => [];

  constructor(metrics: MetricsService) {
    const snap = () => this.snapshot();
    // From peers and proxies: pieces that verified only (a liar's garbage is not swarm traffic).
    this.bytes = metrics.blobBytesReceived();
    this.uploaded = metrics.counter('swarm_uploaded_bytes_total', 'Bytes uploaded to BitTorrent peers.');
    this.banned = metrics.counter('swarm_peers_banned_total', 'Peers dropped and banned for sending pieces that failed verification.');
    this.pullDuration = metrics.histogram(
      'swarm_pull_duration_seconds',
      'Time to download a blob from the swarm, by result.',
      ['result'],
      [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900],
    );
    this.torrents = metrics.gauge('swarm_torrents', 'Torrents in the BitTorrent client, by state.', ['state'], function collect() {
      const all = snap();
      this.set({ state: 'seeding' }, all.filter((t) => t.state === 'seeding').length);
      this.set({ state: 'downloading' }, all.filter((t) => t.state === 'downloading').length);
    });
    // No info hash label: /metrics is open, and an info hash is what a peer needs to ask for a blob.
    this.peers = metrics.gauge(
      'swarm_torrent_peers',
      'Connected peers, summed over torrents, by torrent state.',
      ['state'],
      function collect() {
        const all = snap();
        for (const state of ['seeding', 'downloading'] as const) {
          this.set(
            { state },
            all.filter((t) => t.state === state).reduce((n, t) => n + t.peers, 0),
          );
        }
      },
    );
    this.pieceFailures = metrics.counter('swarm_piece_failures_total', 'Pieces received from peers that failed their SHA-1 (discarded).');
    this.discarded = metrics.counter(
      'swarm_discarded_bytes_total',
      'Piece bytes received but not used, by reason (not-wanted: piece done or claimed; not-requested: cancelled, choked or taken back; duplicate: endgame).',
      ['reason'],
    );
    this.corruptFiles = metrics.counter(
      'swarm_corrupt_files_total',
      'Seeded files found corrupt when a piece was read back (seeding stopped, file evicted).',
    );
  }

  /** The swarm client reports its torrents through this when metrics are scraped. */
  observe(snapshot: () => TorrentPeersSnapshot[]): void {
    this.snapshot = snapshot;
  }

  addBytes(source: Exclude<ByteSource, 'origin'>, n: number): void {
    this.bytes.inc({ source }, n);
  }
}
