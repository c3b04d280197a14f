import { openSync, closeSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { sleep, type Clock } from '#ops';
import type { DownloadHandle, DownloadOptions, StoredWatch, TransferProgress } from '../client/swarm-client.js';
import type { SwarmDownloader } from '../client/swarm-downloader.js';
import { TorrentGoneError } from '../swarm.errors.js';
import { parseBlobMetainfo } from '../torrent/blob-torrent.js';

/**
 * An in-memory swarm: `download()` hands out a `FakeDownload` of a blob registered with `add`,
 * whose pieces arrive only when the spec says so (`deliver`). `hold()` keeps the next downloads
 * from starting until `release()` (a download whose file takes long to open). Test-only.
 */
export class FakeSwarmClient implements SwarmDownloader {
  readonly downloads: FakeDownload[] = [];
  private readonly blobs = new Map<string, Buffer>();
  private gate: Promise<void> | undefined;
  private openGate: (() => void) | undefined;
  /** Calls of download() waiting at the gate. */
  waiting = 0;

  constructor(private readonly clock: Clock) {}

  /** Makes `data` downloadable (by its torrent, named after its sha256 hex). */
  add(hex: string, data: Buffer): this {
    this.blobs.set(hex, data);
    return this;
  }

  hold(): void {
    this.gate ??= new Promise<void>((resolve) => (this.openGate = resolve));
  }

  release(): void {
    this.openGate?.();
    this.gate = this.openGate = undefined;
  }

  /** Downloads handed out and not destroyed (a download the fetcher handed on for seeding stays open). */
  open(): FakeDownload[] {
    return this.downloads.filter((d) => !d.destroyed);
  }

  async download(metainfo: Uint8Array, opts: DownloadOptions): Promise<DownloadHandle> {
    const info = parseBlobMetainfo(metainfo);
    const data = this.blobs.get(info.name);
    if (!data) throw new Error(`fake swarm: no blob ${info.name}`);
    if (this.gate) {
      this.waiting++;
      await this.gate;
      this.waiting--;
    }
    const download = new FakeDownload(this.clock, info.infoHash, info.name, data, info.pieceLength, join(opts.dir, info.name), opts);
    this.downloads.push(download);
    return download;
  }
}

/**
 * One download of a `FakeSwarmClient`: pieces are written into `path` (the fill's own file when
 * the fetcher downloads in place) when delivered, and read back by `createReadStream`.
 */
export class FakeDownload implements DownloadHandle {
  readonly length: number;
  readonly done: Promise<string>;
  destroyed = false;
  /** Connected peers as the fetcher sees them (0: it rescues late pieces sooner). */
  peers = 1;
  received = 0;
  readonly peersAdded: string[] = [];
  /** Pieces handed in with `adopt`, and whether they matched. */
  readonly adopted: { index: number; ok: boolean }[] = [];
  /** Watches and read streams not closed yet. */
  openReaders = 0;
  private readonly have: boolean[];
  private wake = new Set<() => void>();

  constructor(
    private readonly clock: Clock,
    readonly infoHash: string,
    readonly name: string,
    private readonly data: Buffer,
    readonly pieceLength: number,
    readonly path: string,
    readonly options: DownloadOptions,
  ) {
    this.length = data.length;
    this.have = new Array<boolean>(Math.ceil(data.length / pieceLength)).fill(false);
    // A download that skips a prefix never completes (as the real one); the specs never need `done`.
    this.done = new Promise<string>(() => undefined);
    this.addPeers(options.peers ?? []);
  }

  get pieces(): number {
    return this.have.length;
  }

  /** Pieces `indices` arrive from peers: written into `path`, then visible to readers. */
  deliver(...indices: number[]): void {
    if (this.destroyed) throw new TorrentGoneError('fake download destroyed');
    for (const i of indices) {
      if (this.have[i]) continue;
      this.write(i, this.piece(i));
      this.received += this.piece(i).length;
    }
    this.notify();
  }

  /** Every piece from the one holding byte `from` on. */
  deliverFrom(from: number): void {
    const first = Math.floor(from / this.pieceLength);
    this.deliver(...Array.from({ length: this.pieces - first }, (_, k) => first + k));
  }

  createReadStream(start = 0): Readable {
    const stored = this.stored(start);
    const data = this.data;
    this.openReaders++;
    const done = () => this.openReaders--;
    return Readable.from(
      (async function* () {
        let pos = start;
        try {
          for await (const end of stored) {
            yield Buffer.from(data.subarray(pos, end));
            pos = end;
          }
        } finally {
          done();
        }
      })(),
      { objectMode: false },
    );
  }

  stored(start = 0): AsyncIterable<number> {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- an async generator cannot be an arrow function
    const self = this;
    return (async function* () {
      let pos = start;
      while (pos < self.length) {
        const end = self.storedEnd(pos);
        if (end > pos) {
          pos = end;
          yield end;
          continue;
        }
        await self.next();
      }
    })();
  }

  progress(): TransferProgress {
    const bytes = this.have.reduce((n, h, i) => n + (h ? this.piece(i).length : 0), 0);
    return { received: this.received, bytes, length: this.length, downloadRate: 0, uploadRate: 0, peers: this.peers, lastProgressAt: 0 };
  }

  pieceAt(pos: number): { index: number; have: boolean; receiving: boolean; available: number } {
    const index = Math.floor(pos / this.pieceLength);
    return { index, have: this.have[index] ?? false, receiving: false, available: 0 };
  }

  adopt(index: number, data: Buffer): boolean {
    const ok = data.equals(this.piece(index));
    this.adopted.push({ index, ok });
    if (ok && !this.have[index]) {
      this.write(index, data);
      this.notify();
    }
    return ok;
  }

  /** (The fake's pieces arrive only when delivered: where the reader is does not matter.) */
  watch(): StoredWatch {
    this.openReaders++;
    let closed = false;
    return {
      end: (pos) => this.storedEnd(pos),
      moveTo: () => undefined,
      wait: (ms) => this.next(ms),
      close: () => {
        if (!closed) this.openReaders--;
        closed = true;
      },
    };
  }

  addPeers(peers: string[]): void {
    this.peersAdded.push(...peers);
  }

  destroy(): Promise<void> {
    this.destroyed = true;
    this.notify();
    return Promise.resolve();
  }

  private piece(i: number): Buffer {
    return this.data.subarray(i * this.pieceLength, Math.min(this.length, (i + 1) * this.pieceLength));
  }

  private storedEnd(pos: number): number {
    let i = Math.floor(pos / this.pieceLength);
    while (i < this.have.length && this.have[i]) i++;
    return Math.max(pos, Math.min(this.length, i * this.pieceLength));
  }

  /** Synchronous positional write: the piece is on disk before anyone hears of it. */
  private write(i: number, bytes: Buffer): void {
    const fd = openSync(this.path, 'a+');
    closeSync(fd);
    const rw = openSync(this.path, 'r+');
    try {
      writeSync(rw, bytes, 0, bytes.length, i * this.pieceLength);
    } finally {
      closeSync(rw);
    }
    this.have[i] = true;
  }

  /** The next piece held, or `ms` on the clock (forever without); TorrentGoneError once destroyed. */
  private async next(ms?: number): Promise<void> {
    if (this.destroyed) throw new TorrentGoneError('fake download destroyed');
    const ac = new AbortController();
    const woken = new Promise<void>((resolve) => {
      const w = () => {
        this.wake.delete(w);
        ac.abort();
        resolve();
      };
      this.wake.add(w);
      ac.signal.addEventListener('abort', w, { once: true });
    });
    if (ms !== undefined) void sleep(this.clock, ms, ac.signal).then(() => ac.abort());
    await woken;
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- destroy() may have run during the await (TS keeps the narrowing from the first line)
    if (this.destroyed) throw new TorrentGoneError('fake download destroyed');
  }

  private notify(): void {
    for (const w of [...this.wake]) w();
  }
}
