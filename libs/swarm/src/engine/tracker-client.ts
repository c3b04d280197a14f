import bencode, { type BencodeValue } from 'bencode';
import { request } from 'undici';

export interface AnnounceParams {
  /** 20 bytes. */
  infoHash: Buffer;
  /** 20 bytes. */
  peerId: Buffer;
  port: number;
  uploaded: number;
  downloaded: number;
  left: number;
  event?: 'started' | 'completed' | 'stopped';
  /** Default 50. */
  numwant?: number;
}

export interface AnnounceResult {
  /** Seconds until the next regular announce (the tracker's `interval`, at least 1). */
  interval: number;
  /** Peers as `ip:port` (IPv6 as `[addr]:port`), from compact `peers` and `peers6` (non-compact dict lists also accepted). */
  peers: string[];
  complete?: number;
  incomplete?: number;
}

/** A tracker that could not be used: unreachable, timed out, HTTP status ≠ 200, `failure reason`, undecodable answer. */
export class TrackerError extends Error {
  override readonly name = 'TrackerError';
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_NUMWANT = 50;
/** BEP 3 makes `interval` mandatory; a tracker that omits it gets the customary 30 min. */
const DEFAULT_INTERVAL_S = 1800;
/** An announce answer is a few KB at most (200 peers × 18 bytes); anything far bigger is not a tracker. */
const MAX_ANSWER_BYTES = 1 << 20;
const STOP_BUDGET_MS = 2000;
const MAX_TIMER_MS = 2 ** 31 - 1;

// Every byte as %XX: trackers must accept it, and a table lookup beats per-byte escaping decisions.
const PCT = Array.from({ length: 256 }, (_, b) => `%${b.toString(16).padStart(2, '0')}`);

function percentEncode(bytes: Buffer): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += PCT[bytes[i]];
  return s;
}

/** Trackers accept only non-negative integers; a fractional or negative figure would get the announce refused. */
function count(n: number): number {
  return n > 0 ? Math.floor(n) : 0;
}

const TOKEN_PARAM = /([?&]token=)[^&#]*/g;

/** `url` with its `token` query parameter replaced by `***` (for logs). */
export function redactToken(url: string): string {
  return url.replace(TOKEN_PARAM, '$1***');
}

/** `message` with any spelling of the URL's token replaced by `***`, so no error can leak it. */
function scrub(message: string, url: string): string {
  let out = message;
  for (const m of url.matchAll(TOKEN_PARAM)) {
    const raw = m[0].slice(m[1].length);
    if (!raw) continue;
    let decoded = raw;
    try {
      decoded = decodeURIComponent(raw.replace(/\+/g, ' '));
    } catch {
      // Malformed escapes: the raw spelling is the only one that can appear.
    }
    out = out.split(raw).join('***');
    if (decoded !== raw && decoded) out = out.split(decoded).join('***');
  }
  return out;
}

/** One announce. `url` may already carry a query (the swarm token): append with `&`. Times out after `timeoutMs` (default 10 s). */
export async function announce(
  url: string,
  params: AnnounceParams,
  options?: { timeoutMs?: number; signal?: AbortSignal },
): Promise<AnnounceResult> {
  const signal = options?.signal;
  signal?.throwIfAborted();
  const timeoutMs = options?.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const target =
    `${url}${url.includes('?') ? '&' : '?'}info_hash=${percentEncode(params.infoHash)}&peer_id=${percentEncode(params.peerId)}` +
    `&port=${params.port}&uploaded=${count(params.uploaded)}&downloaded=${count(params.downloaded)}&left=${count(params.left)}` +
    `&compact=1&numwant=${count(params.numwant ?? DEFAULT_NUMWANT)}${params.event ? `&event=${params.event}` : ''}`;

  const controller = new AbortController();
  // Set by the timer: typed wide so TS does not narrow it to `false` in the catch below.
  let timedOut = false as boolean;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  timer.unref();
  const onAbort = () => controller.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  let body: Buffer;
  try {
    const res = await request(target, { method: 'GET', signal: controller.signal });
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new TrackerError(`tracker answered HTTP ${res.statusCode}`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      // Leaving the loop by a throw destroys the body stream.
      if (size > MAX_ANSWER_BYTES) throw new TrackerError(`tracker answer exceeds ${MAX_ANSWER_BYTES} bytes`);
      chunks.push(chunk);
    }
    body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    if (err instanceof TrackerError) throw err;
    if (timedOut) throw new TrackerError(`tracker did not answer within ${timeoutMs} ms`);
    // Own message without `cause`: library errors may carry the full URL (hence the token) in their fields.
    const e = err as Error & { code?: unknown };
    const code = typeof e.code === 'string' && !e.message.includes(e.code) ? `${e.code}: ` : '';
    throw new TrackerError(scrub(`tracker unreachable: ${code}${e.message}`, url));
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
  return parseAnswer(body, url);
}

function parseAnswer(body: Buffer, url: string): AnnounceResult {
  let decoded: BencodeValue;
  try {
    decoded = bencode.decode(body);
  } catch {
    throw new TrackerError('undecodable tracker answer: not bencode');
  }
  if (!isDict(decoded)) throw new TrackerError('undecodable tracker answer: not a dictionary');
  const failure = decoded['failure reason'] as BencodeValue | undefined;
  if (failure !== undefined) {
    const reason =
      failure instanceof Uint8Array
        ? Buffer.from(failure).toString('utf8')
        : typeof failure === 'number'
          ? String(failure)
          : '(not a string)';
    throw new TrackerError(scrub(`tracker refused the announce: ${reason}`, url));
  }
  const interval = decoded['interval'];
  const peers: string[] = [];
  const p4 = decoded['peers'];
  if (p4 instanceof Uint8Array) compactPeers4(p4, peers);
  else if (Array.isArray(p4)) dictPeers(p4, peers);
  const p6 = decoded['peers6'];
  if (p6 instanceof Uint8Array) compactPeers6(p6, peers);
  const result: AnnounceResult = {
    interval: typeof interval === 'number' && Number.isFinite(interval) ? Math.max(1, Math.round(interval)) : DEFAULT_INTERVAL_S,
    peers,
  };
  if (typeof decoded['complete'] === 'number') result.complete = decoded['complete'];
  if (typeof decoded['incomplete'] === 'number') result.incomplete = decoded['incomplete'];
  return result;
}

function isDict(v: BencodeValue): v is { [key: string]: BencodeValue } {
  return typeof v === 'object' && !(v instanceof Uint8Array) && !Array.isArray(v);
}

function compactPeers4(b: Uint8Array, out: string[]): void {
  for (let i = 0; i + 6 <= b.length; i += 6) {
    const port = (b[i + 4] << 8) | b[i + 5];
    if (port) out.push(`${b[i]}.${b[i + 1]}.${b[i + 2]}.${b[i + 3]}:${port}`);
  }
}

function compactPeers6(b: Uint8Array, out: string[]): void {
  const groups = new Array<number>(8);
  for (let i = 0; i + 18 <= b.length; i += 18) {
    const port = (b[i + 16] << 8) | b[i + 17];
    if (!port) continue;
    for (let g = 0; g < 8; g++) groups[g] = (b[i + 2 * g] << 8) | b[i + 2 * g + 1];
    out.push(`[${formatIpv6(groups)}]:${port}`);
  }
}

/** RFC 5952 text: lower-case hex, no leading zeros, the first longest run (≥ 2) of zero groups as `::`. */
function formatIpv6(groups: number[]): string {
  let bestAt = -1;
  let bestLen = 1;
  for (let g = 0; g < 8;) {
    if (groups[g] !== 0) {
      g++;
      continue;
    }
    let end = g;
    while (end < 8 && groups[end] === 0) end++;
    if (end - g > bestLen) {
      bestAt = g;
      bestLen = end - g;
    }
    g = end;
  }
  const hex = (from: number, to: number) =>
    groups
      .slice(from, to)
      .map((x) => x.toString(16))
      .join(':');
  if (bestAt < 0) return hex(0, 8);
  return `${hex(0, bestAt)}::${hex(bestAt + bestLen, 8)}`;
}

function dictPeers(list: BencodeValue[], out: string[]): void {
  for (const p of list) {
    if (!isDict(p)) continue;
    const ip = p['ip'];
    const port = p['port'];
    if (!(ip instanceof Uint8Array) || typeof port !== 'number' || port < 1 || port > 65535) continue;
    const text = Buffer.from(ip).toString('latin1');
    out.push(text.includes(':') ? `[${text}]:${port}` : `${text}:${port}`);
  }
}

export interface TrackerAnnouncerOptions {
  urls: string[];
  /** Current figures for each announce (called at announce time). */
  params: () => Omit<AnnounceParams, 'event'>;
  onPeers: (peers: string[]) => void;
  /** First retry delay for a tracker that failed, ms (default 1000); doubles up to `maxRetryMs` (default 300_000). */
  retryFirstMs?: number;
  maxRetryMs?: number;
  /** Called once per failure (for a warning log); never with the URL's token: pass the URL with the token redacted. */
  onError?: (url: string, err: Error) => void;
  timeoutMs?: number;
}

interface TrackerState {
  url: string;
  redacted: string;
  answered: boolean;
  /** `started` acknowledged: later announces are regular ones. */
  started: boolean;
  completedPending: boolean;
  inFlight?: AbortController;
  timer?: NodeJS.Timeout;
  retryMs: number;
}

/**
 * Announces one torrent to every URL independently: `started` first, then every `interval`; a
 * failed tracker is retried with backoff until it answers. Timers are unref'd.
 * The backoff (1 s doubling to 5 min by default) replaces a 30 min library retry: a tracker down
 * when the torrent starts would otherwise stay unused for half an hour.
 */
export class TrackerAnnouncer {
  private readonly trackers: TrackerState[];
  private readonly retryFirstMs: number;
  private readonly maxRetryMs: number;
  private running = false;
  private completedSent = false;
  private stopping?: Promise<void>;

  constructor(private readonly options: TrackerAnnouncerOptions) {
    this.retryFirstMs = Math.max(1, options.retryFirstMs ?? 1000);
    this.maxRetryMs = Math.max(this.retryFirstMs, options.maxRetryMs ?? 300_000);
    this.trackers = options.urls.map((url) => ({
      url,
      redacted: redactToken(url),
      answered: false,
      started: false,
      completedPending: false,
      retryMs: this.retryFirstMs,
    }));
  }

  start(): void {
    if (this.running || this.stopping) return;
    this.running = true;
    for (const t of this.trackers) this.send(t);
  }

  /** Sends `completed` to every tracker (once). */
  completed(): void {
    if (this.completedSent || this.stopping) return;
    this.completedSent = true;
    for (const t of this.trackers) {
      t.completedPending = true;
      // Before `started` is acknowledged, the follow-up after it carries `completed`.
      if (this.running && t.started && !t.inFlight) this.send(t);
    }
  }

  /** Announce now to every tracker (e.g. more peers wanted); no-op for trackers with a request in flight. */
  announceNow(): void {
    if (!this.running) return;
    for (const t of this.trackers) if (!t.inFlight) this.send(t);
  }

  /** Trackers that have answered at least once. */
  answered(): number {
    let n = 0;
    for (const t of this.trackers) if (t.answered) n++;
    return n;
  }

  /** Stops the timers; sends `stopped` best effort (bounded by 2 s) to trackers that answered before; resolves when done. */
  stop(): Promise<void> {
    this.stopping ??= this.stopAll();
    return this.stopping;
  }

  private async stopAll(): Promise<void> {
    const wasRunning = this.running;
    this.running = false;
    for (const t of this.trackers) {
      clearTimeout(t.timer);
      t.inFlight?.abort();
    }
    if (!wasRunning) return;
    const timeoutMs = Math.min(this.options.timeoutMs ?? STOP_BUDGET_MS, STOP_BUDGET_MS);
    await Promise.all(
      this.trackers
        .filter((t) => t.answered)
        .map((t) =>
          announce(t.url, { ...this.options.params(), event: 'stopped' }, { timeoutMs }).then(
            () => undefined,
            (err: unknown) => this.options.onError?.(t.redacted, err as Error),
          ),
        ),
    );
  }

  private send(t: TrackerState): void {
    clearTimeout(t.timer);
    t.timer = undefined;
    const event = !t.started ? 'started' : t.completedPending ? 'completed' : undefined;
    const controller = new AbortController();
    t.inFlight = controller;
    let params: AnnounceParams;
    try {
      params = { ...this.options.params(), event };
    } catch (err) {
      this.failed(t, controller, err as Error);
      return;
    }
    announce(t.url, params, { timeoutMs: this.options.timeoutMs, signal: controller.signal }).then(
      (res) => this.succeeded(t, controller, event, res),
      (err: unknown) => this.failed(t, controller, err as Error),
    );
  }

  private succeeded(t: TrackerState, controller: AbortController, event: AnnounceParams['event'], res: AnnounceResult): void {
    if (t.inFlight !== controller) return;
    t.inFlight = undefined;
    t.answered = true;
    t.retryMs = this.retryFirstMs;
    if (event === 'started') t.started = true;
    else if (event === 'completed') t.completedPending = false;
    if (!this.running) return;
    if (res.peers.length) this.options.onPeers(res.peers);
    this.schedule(t, t.completedPending ? 0 : res.interval * 1000);
  }

  private failed(t: TrackerState, controller: AbortController, err: Error): void {
    if (t.inFlight !== controller) return;
    t.inFlight = undefined;
    if (!this.running) return;
    this.options.onError?.(t.redacted, err);
    this.schedule(t, t.retryMs);
    t.retryMs = Math.min(t.retryMs * 2, this.maxRetryMs);
  }

  private schedule(t: TrackerState, delayMs: number): void {
    // setTimeout fires at once beyond 2^31 − 1 ms; a tracker asking for weeks gets ~24.8 days.
    t.timer = setTimeout(() => this.send(t), Math.min(delayMs, MAX_TIMER_MS));
    t.timer.unref();
  }
}
