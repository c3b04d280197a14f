import type { Readable } from 'node:stream';
import { request, type Dispatcher } from 'undici';
import { SWARM_TOKEN_HEADER } from '#ops';
import { ProxyAnswerError } from '../swarm.errors.js';

/*
 * The proxy's HTTP API (cluster members only), in one place for both sides: the proxy's
 * controller routes and answers with these names, the agents' swarm fetcher asks with them
 * through `ProxyApiClient`. A name changed here changes both, so they cannot drift apart.
 *
 *   GET /v1/blobs/<digest>/torrent?repo=<name>[&ns=<host>]  the blob's torrent (application/x-bittorrent)
 *   GET /v1/blobs/<digest>?repo=<name>[&ns=<host>]          the blob's bytes (Range `bytes=N-` or `bytes=N-M`)
 *
 * Callers send the swarm token in `SWARM_TOKEN_HEADER` and the client's registry credentials in
 * Authorization (the proxy checks them at the origin).
 */

/** Controller prefix (Nest route syntax, no leading slash). */
export const PROXY_API_PREFIX = 'v1/blobs';
/** Route of the torrent, under `PROXY_API_PREFIX`. */
export const TORRENT_ROUTE = ':digest/torrent';
/** Route of the relay (the blob's bytes), under `PROXY_API_PREFIX`. */
export const RELAY_ROUTE = ':digest';

/** Query parameter naming the repository the blob is pulled from. */
export const REPO_QUERY = 'repo';
/** Query parameter naming the origin registry host (the mirror's `ns`). */
export const NS_QUERY = 'ns';

/** Header telling agents which BitTorrent port to dial the proxy on (its HTTP port differs). */
export const PEER_PORT_HEADER = 'x-p2p-peer-port';
/** Header carrying the torrent's info hash (hex), for operators and tools. */
export const INFO_HASH_HEADER = 'x-p2p-info-hash';
/** Content type of a torrent answer. */
export const TORRENT_CONTENT_TYPE = 'application/x-bittorrent';

/** A torrent larger than this is refused (a blob's metainfo is a few hundred KiB at most). */
const MAX_METAINFO_BYTES = 4 * 1024 * 1024;
/** How much of an error answer is read for the log. */
const MAX_ERROR_BYTES = 4096;

/** One blob as the proxy API names it. */
export interface ProxyBlobQuery {
  digest: string;
  repository: string;
  /** Origin registry host. */
  ns: string;
  /** The client's registry credentials (Authorization header value), if any. */
  authorization?: string;
}

/** A proxy's answer that is no torrent or relay: its status and `: <OCI code> <reason>` of its error body (may be ''). */
interface ProxyRefusal {
  ok: false;
  status: number;
  reason: string;
}

export type TorrentAnswer = { ok: true; metainfo: Buffer; peerPort: number } | ProxyRefusal;
export type RelayAnswer = { ok: true; body: Readable } | ProxyRefusal;

/** A torrent request: aborted by `signal`, or after `timeoutMs` without an answer. */
export interface TorrentRequestOptions {
  signal: AbortSignal;
  timeoutMs: number;
}

/** A relay request for bytes [offset, end) (to the blob's end without `end`). */
export interface RelayRequestOptions {
  offset: number;
  end?: number;
  signal: AbortSignal;
  timeoutMs: number;
}

/** What the swarm fetcher needs of the proxy API (ProxyApiClient; an in-memory fake in specs). */
export interface ProxyApi {
  /** The blob's torrent and the proxy's BitTorrent port, or its refusal; throws when unreachable or the answer is broken. */
  torrent(proxy: string, blob: ProxyBlobQuery, opts: TorrentRequestOptions): Promise<TorrentAnswer>;
  /** The blob's bytes from `offset` relayed by the proxy, or its refusal; throws when unreachable. */
  relay(proxy: string, blob: ProxyBlobQuery, opts: RelayRequestOptions): Promise<RelayAnswer>;
}

export interface ProxyApiClientOptions {
  /** The ring's dispatcher (its TLS settings: proxyCaFile); undefined: undici's global one. */
  dispatcher: Dispatcher | undefined;
  /** Sent in `SWARM_TOKEN_HEADER` when set. */
  swarmToken: string | undefined;
}

/**
 * The agents' side of the proxy API. Network failures throw (the caller decides whether to ask
 * again); an answer that is not the expected one comes back as a `ProxyRefusal` with its body
 * consumed.
 */
export class ProxyApiClient implements ProxyApi {
  constructor(private readonly options: ProxyApiClientOptions) {}

  /**
   * The blob's torrent from `proxy` (base URL) and the proxy's BitTorrent port. Throws when the
   * proxy cannot be reached; ProxyAnswerError when the torrent is too large or the peer-port
   * header is missing.
   */
  async torrent(proxy: string, blob: ProxyBlobQuery, opts: TorrentRequestOptions): Promise<TorrentAnswer> {
    const res = await request(this.url(proxy, TORRENT_ROUTE, blob), {
      headers: this.headers(blob),
      signal: AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs)]),
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      dispatcher: this.options.dispatcher,
    });
    if (res.statusCode !== 200) return { ok: false, status: res.statusCode, reason: await errorSummary(res) };
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of res.body) {
      total += (chunk as Buffer).length;
      if (total > MAX_METAINFO_BYTES) throw new ProxyAnswerError(proxy, `torrent larger than ${MAX_METAINFO_BYTES} bytes`);
      chunks.push(chunk as Buffer);
    }
    const port = Number(res.headers[PEER_PORT_HEADER]);
    if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new ProxyAnswerError(proxy, `no valid ${PEER_PORT_HEADER} header`);
    return { ok: true, metainfo: Buffer.concat(chunks), peerPort: port };
  }

  /**
   * The blob's bytes from `offset` (to `end`, exclusive, if given) relayed by `proxy`: a 206 for
   * exactly that range, or a 200 for the whole blob when the whole blob was asked for. Anything
   * else is a refusal (`reason` read from 4xx/5xx bodies only). Throws when the proxy cannot be
   * reached or does not answer within `timeoutMs`.
   */
  async relay(proxy: string, blob: ProxyBlobQuery, opts: RelayRequestOptions): Promise<RelayAnswer> {
    const { offset, end } = opts;
    const headers = this.headers(blob);
    headers.range = end === undefined ? `bytes=${offset}-` : `bytes=${offset}-${end - 1}`;
    const res = await request(this.url(proxy, RELAY_ROUTE, blob), {
      headers,
      signal: opts.signal,
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      dispatcher: this.options.dispatcher,
    });
    const range = res.headers['content-range'];
    const ok =
      res.statusCode === 206
        ? typeof range === 'string' && range.startsWith(end === undefined ? `bytes ${offset}-` : `bytes ${offset}-${end - 1}/`)
        : res.statusCode === 200 && offset === 0 && end === undefined;
    if (ok) return { ok: true, body: res.body as unknown as Readable };
    if (res.statusCode >= 400) return { ok: false, status: res.statusCode, reason: await errorSummary(res) };
    await res.body.dump();
    return { ok: false, status: res.statusCode, reason: '' };
  }

  /** `<proxy>/<prefix>/<route with the digest>?repo=…&ns=…`: the controller's own route strings. */
  private url(proxy: string, route: typeof TORRENT_ROUTE | typeof RELAY_ROUTE, blob: ProxyBlobQuery): URL {
    const url = new URL(`${proxy}/${PROXY_API_PREFIX}/${route.replace(':digest', blob.digest)}`);
    url.searchParams.set(REPO_QUERY, blob.repository);
    url.searchParams.set(NS_QUERY, blob.ns);
    return url;
  }

  private headers(blob: ProxyBlobQuery): Record<string, string> {
    const headers: Record<string, string> = {};
    if (this.options.swarmToken) headers[SWARM_TOKEN_HEADER] = this.options.swarmToken;
    if (blob.authorization) headers.authorization = blob.authorization;
    return headers;
  }
}

/** `: <OCI error code> <detail reason>` of a proxy's error answer, for the log (reads at most 4 KiB of it). */
async function errorSummary(res: Dispatcher.ResponseData): Promise<string> {
  let text = '';
  try {
    for await (const chunk of res.body) {
      text += (chunk as Buffer).toString('utf8');
      if (text.length >= MAX_ERROR_BYTES) break;
    }
    const error = (JSON.parse(text) as { errors?: { code?: string; message?: string; detail?: { reason?: string } }[] }).errors?.[0];
    if (!error) return '';
    return `: ${error.code ?? ''} ${error.detail?.reason ?? error.message ?? ''}`.trimEnd();
  } catch {
    return '';
  } finally {
    res.body.destroy();
  }
}
