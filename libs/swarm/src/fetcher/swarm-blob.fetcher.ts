import { mkdir, rm } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { PassThrough, pipeline, Readable, Transform } from 'node:stream';
import { Logger } from '@nestjs/common';
import { sleep, systemClock, type Clock, type ClockTimer } from '#ops';
import { digestHex, type BlobFetcher, type BlobRequest, type FetchedBlob, type FillTarget, type StoredUntil } from '#registry';
import type { DownloadHandle } from '../client/swarm-client.js';
import type { SwarmDownloader } from '../client/swarm-downloader.js';
import { ProxyApiClient, type ProxyApi, type ProxyBlobQuery, type RelayAnswer, type TorrentAnswer } from '../proxy/proxy-api.js';
import type { BlobOwners } from '../proxy/ring/blob-owners.js';
import type { BlobSeeding } from '../seeding/blob-seeding.js';
import { ProxyAnswerError } from '../swarm.errors.js';
import { parseBlobMetainfo, type BlobMetainfo } from '../torrent/blob-torrent.js';

export interface SwarmBlobFetcherOptions {
  /** Which proxy owns a blob (the ProxyRing). */
  ring: BlobOwners;
  /** Downloads blob torrents (the process's SwarmClient). */
  swarm: SwarmDownloader;
  /** Seeds blobs once cached (the BlobSeeder). */
  seeder: BlobSeeding;
  /** The proxies' HTTP API (default: a ProxyApiClient over the ring's dispatcher). */
  api?: ProxyApi;
  /** Time for every wait and timeout here (default: the system's; a manual one in specs). */
  clock?: Clock;
  /** Where downloads are written (inside the cache's temp area, so a restart clears leftovers). */
  downloadDir: string;
  swarmToken: string | undefined;
  /** Blobs smaller than this go straight to the origin (`p2pMinSize`). */
  minSize: number;
  /** Timeout for one torrent request to a proxy (it may have to fetch the blob from the origin first), ms. */
  torrentTimeoutMs: number;
  /**
   * A torrent not answered within this many ms means the proxy is still fetching the blob from the
   * origin: the agent streams the bytes from the proxy's fetch meanwhile (relay), and moves to the
   * swarm once the torrent exists. 0 turns the relay off (wait for the torrent).
   */
  relayAfterMs?: number;
  /** Limits relay bytes (the node's downloadRate, as for origin bytes). */
  relayThrottle?: () => Transform;
  /** Counts relay bytes (metrics). */
  onRelayBytes?: (n: number) => void;
  /**
   * The reader's next piece may be missing this long, ms, when no connected peer has it, before the
   * agent fetches that one piece from the owning proxy's relay itself (and hands it to the torrent,
   * which seeds it); four times as long when a peer has it or its blocks are arriving, 2 s when no
   * peer is connected at all. The swarm goes on meanwhile. Default 20 s (2 × stallTimeout).
   */
  rescueAfterMs?: number;
  /** Counts bytes of late pieces fetched over the relay (metrics). */
  onRescueBytes?: (n: number) => void;
}

/** A proxy's torrent for the requested blob, checked once on arrival to describe exactly that blob. */
interface ProxyTorrent {
  metainfo: Buffer;
  /** host:port of the proxy's BitTorrent listener. */
  peer: string;
  /** The proxy's base URL. */
  proxy: string;
}

/** Default for `relayAfterMs`: a warm proxy answers a torrent request in milliseconds. */
const DEFAULT_RELAY_AFTER_MS = 300;
/**
 * How long a fresh swarm download may receive nothing before the fill's stall rule applies: an
 * agent the proxy has not unchoked yet gets its first pieces from peers only once they hold some.
 */
const JOIN_GRACE_MS = 30_000;
/** Proxies tried per blob before giving up on the swarm. */
const MAX_PROXIES = 3;
/** Default for `rescueAfterMs`. */
const DEFAULT_RESCUE_AFTER_MS = 20_000;
/** A reader whose download has no peer connected waits this long for the next piece before the relay serves it. */
const NO_PEER_RESCUE_MS = 2000;
/** How often a reader waiting on a late piece re-checks it. */
const FRONTIER_POLL_MS = 1000;
/**
 * A proxy asked to relay a blob as a fallback answers with headers within this long, or the origin
 * serves (a warm proxy answers in milliseconds, a cold one as soon as its origin fetch starts).
 */
const FALLBACK_RELAY_TIMEOUT_MS = 10_000;
/** Tries of one proxy's torrent API per blob before the next proxy (or the origin). */
const TORRENT_ATTEMPTS = 3;

/**
 * The swarm between cache and origin: asks the blob's owning proxy (rendezvous hash) for its
 * torrent, adds that proxy as a direct peer (works with every tracker down), and streams verified
 * pieces from `offset` as they arrive. Returns undefined — the origin serves — for small blobs, no
 * reachable proxy, or a proxy refusal; a stall mid-blob is the fill's to notice (stallTimeout) and
 * it resumes from the origin by Range. Once the blob is verified and cached, it is seeded from there.
 *
 * Cold blobs: a torrent needs every piece hashed, so the proxy can only make it after fetching the
 * whole blob. Rather than wait (store-and-forward: a 1 GB layer meant no first byte for the whole
 * origin fetch), the agent relays the proxy's in-progress fetch over HTTP and joins the swarm at its
 * current offset as soon as the torrent exists. The origin still sees one fetch, the proxy's.
 */
export class SwarmBlobFetcher implements BlobFetcher {
  readonly name = 'swarm';
  private readonly logger = new Logger(SwarmBlobFetcher.name);
  private readonly downloads = new Map<string, Download>();
  /** Discards in progress (a second caller waits for the same one). */
  private readonly discarding = new Map<string, Promise<void>>();
  /** Torrents still on their way for blobs being relayed (to seed them once cached). */
  private readonly pendingTorrents = new Map<string, Promise<ProxyTorrent | undefined>>();
  /**
   * Blobs whose owning proxy failed them during their current fill (an error status, or a relay
   * that broke off): the proxy is not asked again for them until the fill settles, so the fill
   * goes on from the origin at once. The proxy itself stays in the ring for other blobs.
   */
  private readonly failedAtProxy = new Set<string>();
  /** The proxies' HTTP API, over the ring's dispatcher (its TLS settings). */
  private readonly api: ProxyApi;
  private readonly clock: Clock;

  constructor(private readonly options: SwarmBlobFetcherOptions) {
    this.api = options.api ?? new ProxyApiClient({ dispatcher: options.ring.dispatcher, swarmToken: options.swarmToken });
    this.clock = options.clock ?? systemClock;
  }

  async fetch(request: BlobRequest, offset: number, signal: AbortSignal, target?: FillTarget): Promise<FetchedBlob | undefined> {
    if (request.size === undefined || request.size < this.options.minSize) return undefined;
    const size = request.size;
    // Aborted when the relay shows the proxy cannot serve this blob: its torrent will not come either.
    const torrentAc = new AbortController();
    const torrentP = this.torrentFromOwner(request, AbortSignal.any([signal, torrentAc.signal]));
    // Whoever awaits it sees its failure; one left behind (the origin took over) must not be unhandled.
    torrentP.catch(() => undefined);
    const relayAfter = this.options.relayAfterMs ?? DEFAULT_RELAY_AFTER_MS;
    if (relayAfter > 0 && (await settlesWithin(this.clock, torrentP, relayAfter)) === 'pending') {
      const relay = await this.openRelay(request, offset, signal);
      if (relay) return this.relayThenSwarm(request, offset, size, relay, torrentP, signal, target);
      if (this.failedAtProxy.has(request.digest)) {
        torrentAc.abort();
        return undefined;
      }
    }
    const torrent = await torrentP;
    if (!torrent) return undefined;
    const download = await this.startDownload(request, torrent, { target, skipBefore: offset, signal });
    const { handle } = download;
    let delivered = 0;
    let stream: Readable;
    const frontier: Frontier = { patient: () => false };
    if (download.inPlace) {
      // The torrent writes into the fill's own file: hand over positions, not bytes.
      stream = Readable.from(
        this.inPlace(request, handle, offset, size, signal, frontier, (end) => (delivered = end - offset)),
        { objectMode: true },
      );
    } else {
      stream = counted(handle.createReadStream(offset), (n) => (delivered += n));
    }
    const joining = this.joining(() => delivered);
    this.discardOnAbort(stream, request.digest, signal);
    return {
      size,
      stream,
      received: () => handle.progress().received,
      // Any byte from the swarm is progress: the reader's next piece is looked after here (rescue).
      stallMinRate: download.inPlace ? 1 : undefined,
      joining: () => joining() || frontier.patient(),
      stop: () => this.discard(request.digest),
    };
  }

  /**
   * The fetcher after this one: when the swarm stalls or fails mid-blob, the rest comes from the
   * owning proxy over HTTP (the relay, Range from the byte reached), not from the origin — the
   * proxy holds the blob or is fetching it anyway, so the origin still sees one fetch per cluster.
   * An agent the proxy keeps choked and no peer serves is the usual case. A proxy that is down,
   * refuses or does not answer within 10 s leaves it to the origin.
   */
  relayFallback(): BlobFetcher {
    return {
      name: 'relay',
      fetch: async (request, offset, signal) => {
        if (request.size === undefined || request.size < this.options.minSize) return undefined;
        const relay = await this.openRelay(request, offset, signal, FALLBACK_RELAY_TIMEOUT_MS);
        if (!relay) return undefined;
        const stream = counted(relay, (n) => this.options.onRelayBytes?.(n));
        signal.addEventListener('abort', () => stream.destroy(), { once: true });
        return { size: request.size, stream };
      },
    };
  }

  /** The fill gave up on this download: end its stream and drop the download. */
  private discardOnAbort(stream: Readable, digest: string, signal: AbortSignal): void {
    signal.addEventListener(
      'abort',
      () => {
        stream.destroy();
        void this.discard(digest);
      },
      { once: true },
    );
  }

  /**
   * `joining` for a swarm download that just started: it has delivered no in-order byte yet and
   * the grace period is not over. (Received blocks alone do not end it: one optimistic unchoke
   * hands out a few blocks, then the agent may wait for peers to hold whole pieces.)
   */
  private joining(delivered: () => number): () => boolean {
    const since = this.clock.now();
    return () => delivered() === 0 && this.clock.now() - since < JOIN_GRACE_MS;
  }

  /** Verified and cached: seed the cached file (the download's session turns into the seed). Failed: clean up. */
  settled(digest: string, ok: boolean): void {
    this.failedAtProxy.delete(digest);
    const pending = this.pendingTorrents.get(digest);
    this.pendingTorrents.delete(digest);
    const download = this.downloads.get(digest);
    if (!download) {
      // Relayed to the end before the torrent existed: seed once it does.
      if (ok && pending)
        void pending.then(
          (t) => (t ? this.seed(digest, t.metainfo) : undefined),
          () => undefined,
        );
      return;
    }
    if (!ok || !download.inPlace) {
      void this.discard(digest).then(() => (ok ? this.seed(digest, download.metainfo) : undefined));
      return;
    }
    // Verified and cached: the same torrent becomes the seed of the cached file, keeping its peer
    // connections (peers still downloading go on from us without reconnecting).
    this.downloads.delete(digest);
    void this.seed(digest, download.metainfo);
  }

  /**
   * The fill gave up on the swarm or failed: stop the download (and delete its partial file, unless
   * that is the fill's own). Resolves once the torrent can write nothing more.
   */
  discard(digest: string): Promise<void> {
    const running = this.discarding.get(digest);
    if (running) return running;
    const download = this.downloads.get(digest);
    if (!download) return Promise.resolve();
    this.downloads.delete(digest);
    const done = (async () => {
      await download.handle.destroy().catch(() => undefined);
      if (!download.inPlace) await rm(download.handle.path, { force: true });
    })().finally(() => this.discarding.delete(digest));
    this.discarding.set(digest, done);
    return done;
  }

  /**
   * The relayed bytes from `offset`, then — once the torrent exists — the swarm's from wherever the
   * relay got to. A relay that fails mid-blob fails the stream (the fill resumes from the origin).
   */
  private relayThenSwarm(
    request: BlobRequest,
    offset: number,
    size: number,
    relay: Readable,
    torrentP: Promise<ProxyTorrent | undefined>,
    signal: AbortSignal,
    target: FillTarget | undefined,
  ): FetchedBlob {
    this.pendingTorrents.set(request.digest, torrentP);
    let torrent: ProxyTorrent | undefined;
    torrentP.then(
      (t) => (torrent = t),
      () => undefined,
    );
    let relayed = 0;
    let handle: DownloadHandle | undefined;
    let joining: (() => boolean) | undefined;
    let swarmPosition = offset;
    const frontier: Frontier = { patient: () => false };
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- an async generator cannot be an arrow function
    const self = this;
    async function* bytes(): AsyncGenerator<Buffer | StoredUntil> {
      let position = offset;
      // The relay stops as soon as the torrent exists: the proxy's uplink is then better spent on
      // pieces for the swarm than on the same prefix for every agent. The torrent may write the
      // piece the relay was in the middle of into the fill's file: those bytes are the same (SHA-1
      // verified against the blob's torrent, and the fill checks the blob's sha256 anyway).
      try {
        for await (const chunk of relay as AsyncIterable<Buffer>) {
          position += chunk.length;
          relayed += chunk.length;
          self.options.onRelayBytes?.(chunk.length);
          yield chunk;
          if (torrent) break;
        }
      } finally {
        relay.destroy();
      }
      if (position >= size) return;
      const t = torrent ?? (await torrentP);
      if (!t) throw new Error(`relay of ${request.digest} ended at ${position} of ${size} bytes and there is no torrent`);
      const download = await self.startDownload(request, t, { target, skipBefore: position, signal });
      handle = download.handle;
      const switchedAt = position;
      joining = self.joining(() => swarmPosition - switchedAt);
      self.logger.log({
        msg: 'torrent ready; continuing from the swarm',
        digest: request.digest,
        infoHash: download.handle.infoHash,
        bytes: position - offset,
        source: 'relay',
      });
      swarmPosition = position;
      if (download.inPlace) {
        yield* self.inPlace(request, handle, position, size, signal, frontier, (end) => (swarmPosition = end));
        return;
      }
      for await (const chunk of handle.createReadStream(position) as AsyncIterable<Buffer>) {
        swarmPosition += chunk.length;
        yield chunk;
      }
    }
    const stream = Readable.from(bytes(), { objectMode: true });
    this.discardOnAbort(stream, request.digest, signal);
    return {
      size,
      stream,
      received: () => relayed + (handle?.progress().received ?? 0),
      stallMinRate: 1,
      joining: () => (joining?.() ?? false) || frontier.patient(),
      stop: () => this.discard(request.digest),
    };
  }

  /**
   * The blob from `offset` relayed by its owning proxy, or undefined when that does not work. An
   * error status, an unreachable proxy or a relay that breaks off mid-body marks the blob failed at
   * the proxy (see `failedAtProxy`); the returned stream errors as soon as the relay does.
   */
  private async openRelay(
    request: BlobRequest,
    offset: number,
    signal: AbortSignal,
    timeoutMs = this.options.torrentTimeoutMs,
    end?: number,
  ): Promise<Readable | undefined> {
    let proxy: string | undefined;
    try {
      proxy = this.options.ring.ownersFor(request.digest)[0];
    } catch {
      return undefined;
    }
    if (!proxy) return undefined;
    if (this.failedAtProxy.has(request.digest)) {
      this.logger.log({
        msg: 'not asking the proxy to relay again (it failed this blob); using the origin',
        digest: request.digest,
        proxy,
      });
      return undefined;
    }
    let answer: RelayAnswer;
    try {
      answer = await this.api.relay(proxy, blobQuery(request), { offset, end, signal, timeoutMs });
    } catch (err) {
      if (signal.aborted) throw err;
      this.proxyFailed(proxy, request.digest, `cannot relay: ${(err as Error).message}`, false);
      return undefined;
    }
    // 206 from `offset` (or 200 for the whole blob when offset is 0); anything else: no relay.
    if (!answer.ok) {
      if (answer.status >= 400) {
        this.proxyFailed(proxy, request.digest, `cannot relay (${answer.status}${answer.reason})`, answer.status >= 500);
      } else {
        this.logger.warn({ msg: 'proxy cannot relay; waiting for its torrent', digest: request.digest, proxy, status: answer.status });
      }
      return undefined;
    }
    const body = answer.body;
    const owner = proxy;
    // eslint-disable-next-line prefer-const -- assigned once below: the error listener reading it must be registered first
    let relay: Readable | undefined;
    // Registered before pipeline() joins the body to the throttle: a network failure reaches this
    // listener while the relay is still open; the premature close that follows a reader's own
    // destroy() (the torrent took over, the piece is in) finds it destroyed already: no failure.
    body.once('error', (err: Error) => {
      if (!signal.aborted && !relay?.destroyed) this.proxyFailed(owner, request.digest, `relay broke off: ${err.message}`, false);
    });
    // pipeline, not pipe: a relay that breaks off must fail the stream the fill reads at once (a
    // pipe would leave the throttle open, and the fill would wait out its stall timeout).
    relay = pipeline(body, this.options.relayThrottle?.() ?? new PassThrough(), () => undefined);
    relay.once('end', () => this.options.ring.blobServed(owner));
    return relay;
  }

  /**
   * The owning proxy failed `digest` (error status, unreachable, relay broken off): the rest of
   * this fill goes to the origin. A per-blob verdict: only 5xx answers (`counts`) for several
   * blobs in a row make the ring rank the proxy down. A relay that breaks off or times out says
   * little about other blobs (the proxy's origin fetch dropped, or its uplink is saturated), and a
   * proxy that cannot be reached at all is the torrent request's to find (asked again, then down).
   */
  private proxyFailed(proxy: string, digest: string, reason: string, counts: boolean): void {
    this.failedAtProxy.add(digest);
    this.logger.warn({ msg: 'proxy failed the blob; it continues from the origin', digest, proxy, reason });
    if (counts) this.options.ring.blobFailed(proxy, digest);
  }

  /**
   * In-order output of a download that writes into the fill's file: StoredUntil marks as the
   * torrent's contiguous pieces grow. When the reader's next piece is late (see `rescueAfterMs`) it
   * is also fetched from the owning proxy's relay and handed to the torrent (`adopt`), which writes
   * it unless a peer was quicker: the client keeps moving, the swarm keeps going for every other
   * piece, and the torrent stays the only writer. Falling back never ends P2P for the blob. A relay
   * that cannot serve the piece ends this fetcher (the fill goes on with the next one).
   */
  private async *inPlace(
    request: BlobRequest,
    handle: DownloadHandle,
    start: number,
    size: number,
    signal: AbortSignal,
    frontier: Frontier,
    onPosition: (end: number) => void,
  ): AsyncGenerator<Buffer | StoredUntil> {
    const rescueAfter = this.options.rescueAfterMs ?? DEFAULT_RESCUE_AFTER_MS;
    const watch = handle.watch(start);
    let pos = start;
    let since = this.clock.now();
    let rescuing = false;
    let rescueError: Error | undefined;
    // While a late piece is being fetched over the relay the fill sees no output: not a stall. Otherwise
    // the fill's rule stands: any byte from the swarm is progress, none for stallTimeout is a stall.
    frontier.patient = () => rescuing;
    try {
      while (pos < size) {
        const end = watch.end(pos);
        if (end > pos) {
          pos = end;
          watch.moveTo(pos);
          onPosition(pos);
          since = this.clock.now();
          yield { storedUntil: end };
          continue;
        }
        if (rescueError) throw rescueError;
        const piece = handle.pieceAt(pos);
        // The relay takes the proxy's uplink, which the swarm needs too: a piece some connected peer
        // holds (the picker asks for the reader's next piece first) or whose blocks are arriving
        // gets a long wait; one nobody has, `rescueAfter`; with no peer at all (the seed went away,
        // e.g. it found its file corrupt) nothing will come, so hardly any.
        const patience =
          handle.progress().peers === 0
            ? Math.min(rescueAfter, NO_PEER_RESCUE_MS)
            : piece.receiving || piece.available > 0
              ? 4 * rescueAfter
              : rescueAfter;
        if (!rescuing && this.clock.now() - since >= patience) {
          rescuing = true;
          this.logger.log({
            msg: 'piece late; fetching it from the proxy too',
            digest: request.digest,
            infoHash: handle.infoHash,
            piece: piece.index,
            waitedMs: this.clock.now() - since,
            peers: piece.available,
          });
          this.rescue(request, handle, piece.index, size, signal).then(
            () => {
              rescuing = false;
              since = this.clock.now();
            },
            (err: unknown) => {
              rescuing = false;
              rescueError = err as Error;
            },
          );
        }
        await watch.wait(FRONTIER_POLL_MS);
      }
    } finally {
      rescuing = false;
      frontier.patient = () => false;
      watch.close();
    }
  }

  /**
   * Fetches piece `index` from the owning proxy's relay (Range) into memory and hands it to the
   * torrent, which writes it into the fill's file like a downloaded piece unless a peer delivers
   * it first (one writer per range). Bytes counted as relay bytes.
   */
  private async rescue(request: BlobRequest, handle: DownloadHandle, index: number, size: number, signal: AbortSignal): Promise<void> {
    const from = index * handle.pieceLength;
    const to = Math.min(size, from + handle.pieceLength);
    const relay = await this.openRelay(request, from, signal, FALLBACK_RELAY_TIMEOUT_MS, to);
    if (!relay) throw new Error(`piece ${index} is late and the proxy cannot relay it`);
    // A relay that breaks off fails the loop below at once (see openRelay), and so the fetcher.
    const data = Buffer.allocUnsafe(to - from);
    let at = 0;
    try {
      for await (const chunk of relay as AsyncIterable<Buffer>) {
        const part = chunk.subarray(0, data.length - at);
        part.copy(data, at);
        at += part.length;
        this.options.onRescueBytes?.(part.length);
        if (at >= data.length || handle.pieceAt(from).have) break;
      }
    } finally {
      relay.destroy();
    }
    if (handle.pieceAt(from).have) return;
    if (at !== data.length) throw new Error(`relay of piece ${index} ended at ${at} of ${data.length} bytes`);
    if (!handle.adopt(index, data)) throw new Error(`piece ${index} from the proxy's relay does not match its SHA-1`);
  }

  /**
   * Starts the torrent's download (registered for settle/discard). With a fill target (`<dir>/<hex>`) the torrent writes straight into the fill's file — one write
   * per byte instead of two — unless a download of this torrent already runs elsewhere. A fill
   * that gave up on this fetcher while the download was starting (the hand-over from the relay)
   * has already discarded what it could see: the download is stopped here, never registered.
   */
  private async startDownload(
    request: BlobRequest,
    torrent: ProxyTorrent,
    opts: { target?: FillTarget; skipBefore: number; signal: AbortSignal },
  ): Promise<Download> {
    const hex = digestHex(request.digest);
    const intoTarget = opts.target && basename(opts.target.path) === hex ? opts.target.path : undefined;
    const dir = intoTarget ? dirname(intoTarget) : this.options.downloadDir;
    await mkdir(dir, { recursive: true });
    const handle = await this.options.swarm.download(torrent.metainfo, { dir, peers: [torrent.peer], skipBefore: opts.skipBefore });
    const download: Download = { handle, metainfo: torrent.metainfo, inPlace: intoTarget !== undefined && handle.path === intoTarget };
    if (opts.signal.aborted) {
      await handle.destroy().catch(() => undefined);
      if (!download.inPlace) await rm(handle.path, { force: true });
      throw opts.signal.reason as Error;
    }
    this.downloads.set(request.digest, download);
    this.logger.log({
      msg: 'swarm download started',
      digest: request.digest,
      infoHash: handle.infoHash,
      peer: torrent.peer,
      proxy: torrent.proxy,
    });
    return download;
  }

  /** Seeds the cached blob with a torrent already checked to describe it (see `checked`). */
  private async seed(digest: string, metainfo: Buffer): Promise<void> {
    try {
      await this.options.seeder.seedWith(digest, metainfo);
    } catch (err) {
      this.logger.warn({ msg: 'cannot seed', digest, reason: (err as Error).message });
    }
  }

  private async torrentFromOwner(request: BlobRequest, signal: AbortSignal): Promise<ProxyTorrent | undefined> {
    let owners: string[];
    try {
      owners = this.options.ring.ownersFor(request.digest);
    } catch {
      return undefined;
    }
    for (const proxy of owners.slice(0, MAX_PROXIES)) {
      // A connection reset on a proxy whose uplink is saturated (it answers many agents at once
      // after a cold fetch) is no reason to give the blob's swarm up: ask again before moving on.
      for (let attempt = 1; ; attempt++) {
        if (signal.aborted) return undefined;
        try {
          const answer = await this.askProxy(proxy, request, signal);
          if (!answer) return undefined;
          const torrent = this.checked(request, { ...answer, proxy });
          this.options.ring.blobServed(proxy);
          return torrent;
        } catch (err) {
          // Aborted by the fill (it moved on, e.g. after the relay broke off): the error is the
          // fill's reason, not the proxy's — no retry, and no reason to rank the proxy down.
          // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- it may have been aborted during the await (TS keeps the narrowing from the loop's first line)
          if (signal.aborted) return undefined;
          // An answer, but an unusable one (garbage, another blob's torrent, 5xx): asking again
          // would get the same. Counted against the proxy for this blob; the next fetcher goes on.
          if (err instanceof ProxyAnswerError) {
            this.proxyFailed(proxy, request.digest, err.reason, true);
            throw err;
          }
          if (attempt < TORRENT_ATTEMPTS) {
            this.logger.warn({
              msg: 'proxy failed the torrent request; asking again',
              digest: request.digest,
              proxy,
              reason: (err as Error).message,
            });
            await sleep(this.clock, attempt * 1000, signal);
            continue;
          }
          this.logger.warn({
            msg: 'proxy failed the torrent request; trying the next',
            digest: request.digest,
            proxy,
            reason: (err as Error).message,
          });
          this.options.ring.markDown(proxy);
          break;
        }
      }
    }
    return undefined;
  }

  /** The torrent if it describes the requested blob; ProxyAnswerError if it is none, or another blob's. */
  private checked(request: BlobRequest, torrent: ProxyTorrent): ProxyTorrent {
    let summary: BlobMetainfo;
    try {
      summary = parseBlobMetainfo(torrent.metainfo);
    } catch (err) {
      throw new ProxyAnswerError(torrent.proxy, `sent no usable torrent: ${(err as Error).message}`);
    }
    if (summary.length !== request.size || summary.name !== digestHex(request.digest)) {
      throw new ProxyAnswerError(
        torrent.proxy,
        `sent a torrent of ${summary.name} (${summary.length} B), not of this blob (${request.size ?? '?'} B)`,
      );
    }
    return torrent;
  }

  /**
   * The torrent from one proxy; undefined when it answers a 4xx (the origin decides, e.g. its
   * 404). ProxyAnswerError for a 5xx — the proxy failed this blob (its origin fetch broke off…),
   * which is no reason to ask it again or to rank it down for other blobs — and for a broken
   * answer. Other errors: the proxy could not be reached or did not answer within
   * `torrentTimeoutMs` on the fetcher's clock (asked again, then ranked down).
   */
  private async askProxy(
    proxy: string,
    request: BlobRequest,
    signal: AbortSignal,
  ): Promise<{ metainfo: Buffer; peer: string } | undefined> {
    const timeoutMs = this.options.torrentTimeoutMs;
    const timeout = new AbortController();
    const timer = this.clock.setTimeout(() => timeout.abort(new Error(`no torrent within ${timeoutMs} ms`)), timeoutMs);
    let answer: TorrentAnswer;
    try {
      answer = await this.api.torrent(proxy, blobQuery(request), { signal: AbortSignal.any([signal, timeout.signal]), timeoutMs });
    } catch (err) {
      throw timeout.signal.aborted && !signal.aborted ? (timeout.signal.reason as Error) : err;
    } finally {
      this.clock.clearTimeout(timer);
    }
    if (!answer.ok) {
      if (signal.aborted) return undefined;
      if (answer.status >= 500) throw new ProxyAnswerError(proxy, `torrent answered ${answer.status}${answer.reason}`, answer.status);
      this.proxyFailed(proxy, request.digest, `torrent answered ${answer.status}${answer.reason}`, false);
      return undefined;
    }
    return { metainfo: answer.metainfo, peer: `${new URL(proxy).hostname}:${answer.peerPort}` };
  }
}

interface Download {
  handle: DownloadHandle;
  metainfo: Buffer;
  /** The torrent writes into the fill's own temp file (never deleted here). */
  inPlace: boolean;
}

/** Whether the in-place reader is still within its own patience for a late piece (the fill waits meanwhile). */
interface Frontier {
  patient: () => boolean;
}

/** `source` through a pass-through that reports each chunk's size; an error on either side destroys both. */
function counted(source: Readable, onBytes: (n: number) => void): Readable {
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      onBytes(chunk.length);
      done(null, chunk);
    },
  });
  pipeline(source, counter, () => undefined);
  return counter;
}

/** The blob as the proxy API names it (repository, origin host, the client's credentials). */
function blobQuery(request: BlobRequest): ProxyBlobQuery {
  return { digest: request.digest, repository: request.repository, ns: request.origin.host, authorization: request.credentials.header };
}

/** 'settled' if `p` resolves or rejects within `ms` on `clock`, else 'pending' (the promise keeps running). */
async function settlesWithin(clock: Clock, p: Promise<unknown>, ms: number): Promise<'settled' | 'pending'> {
  let timer: ClockTimer | undefined;
  const timeout = new Promise<'pending'>((resolve) => (timer = clock.setTimeout(() => resolve('pending'), ms)));
  try {
    return await Promise.race([
      p.then(
        () => 'settled' as const,
        () => 'settled' as const,
      ),
      timeout,
    ]);
  } finally {
    clock.clearTimeout(timer);
  }
}
