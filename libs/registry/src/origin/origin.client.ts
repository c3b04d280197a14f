import type { Readable } from 'node:stream';
import { Logger } from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import { Agent, errors as undiciErrors, type Dispatcher } from 'undici';
import { BadOriginResponseError, OriginUnavailableError, UnauthorizedError } from '../oci/oci.errors.js';
import { ClientCredentials } from './client-credentials.js';
import type { Origin } from './origin-set.js';
import { parseChallenge, type AuthChallenge } from './www-authenticate.js';

export interface OriginClientOptions {
  /** TCP connect timeout, ms. */
  connectTimeoutMs: number;
  /** Time for the origin to send response headers, ms. */
  headersTimeoutMs: number;
  /**
   * Longest silence while reading a response body, ms (0 = none; default {@link DEFAULT_BODY_TIMEOUT_MS}).
   * Only silence counts: while the reader applies backpressure the clock is stopped, so a slow
   * client never trips it, but an origin that goes quiet mid-body no longer holds a pull forever.
   */
  bodyTimeoutMs?: number;
}

/** Body idle timeout when none is configured (an origin silent this long mid-body is given up). */
export const DEFAULT_BODY_TIMEOUT_MS = 30_000;

export type HeaderMap = Record<string, string | string[] | undefined>;

export interface OriginRequest {
  origin: Origin;
  method: string;
  /** Path and query, starting with /v2/. */
  path: string;
  credentials: ClientCredentials;
  /** Token scope for Bearer origins, e.g. `repository:a/b:pull`. */
  scope?: string;
  headers?: HeaderMap;
  /** Request body (pass-through uploads); a stream cannot be replayed, so auth is settled before it is sent. */
  body?: Readable | Buffer;
  signal?: AbortSignal;
  /** Follow redirects (blob storage backends); Authorization is dropped when the host changes. */
  followRedirects?: boolean;
}

export interface OriginResponse {
  status: number;
  headers: HeaderMap;
  body: Readable;
}

/** What the token cache's fetch needs to ask the origin's token endpoint. */
interface TokenContext {
  origin: Origin;
  creds: ClientCredentials;
  challenge: AuthChallenge;
  scope: string | undefined;
}

// `expect` too: the agent's HTTP server already answered the client's `100-continue` itself, and
// undici refuses to send the header at all (NotSupportedError — it became a 503 on every curl push).
const HOP_BY_HOP = new Set([
  'expect',
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'authorization',
]);
const MAX_TOKENS = 10_000;
const MAX_REDIRECTS = 5;

/**
 * HTTP client for origin registries with their auth: the client's Basic credentials are forwarded
 * to Basic origins and exchanged for tokens at Bearer origins (anonymous tokens when it sent none);
 * tokens are cached per (credentials hash, realm, service, scope) until they expire. A 401 is
 * retried once with fresh auth; one that persists becomes an {@link UnauthorizedError} asking the
 * client for credentials. Used by the agent's mirror and by the proxy's origin fetches.
 */
export class OriginClient {
  private readonly logger = new Logger(OriginClient.name);
  private readonly dispatcher: Dispatcher;
  private readonly challenges = new Map<string, AuthChallenge | null>();
  /**
   * Tokens by (credentials hash, realm, service, scope); `fetch()` asks the token endpoint once per
   * key at a time, shared by concurrent requests (no single client's disconnect aborts it:
   * ignoreFetchAbort), keeps each token for its own lifetime and nothing of a failure.
   */
  private readonly tokens = new LRUCache<string, string, TokenContext>({
    max: MAX_TOKENS,
    ignoreFetchAbort: true,
    fetchMethod: async (_key, _stale, { context, options }) => {
      const { token, expiresIn } = await this.fetchToken(context.origin, context.creds, context.challenge, context.scope);
      // Renew a little early so a token never expires between the check and its use.
      options.ttl = Math.max(1, (expiresIn - 10) * 1000);
      return token;
    },
  });

  constructor(options: OriginClientOptions, dispatcher?: Dispatcher) {
    this.dispatcher =
      dispatcher ??
      new Agent({
        connect: { timeout: options.connectTimeoutMs },
        headersTimeout: options.headersTimeoutMs,
        bodyTimeout: options.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS,
        keepAliveTimeout: 30_000,
        connections: 64,
      });
  }

  /** Sends one request with the right origin auth; throws UnauthorizedError / OriginUnavailableError. */
  async request(req: OriginRequest): Promise<OriginResponse> {
    const replayable = req.body === undefined || Buffer.isBuffer(req.body);
    if (!replayable && !this.challenges.has(req.origin.base)) await this.learnChallenge(req.origin, req.signal);
    let auth = await this.authorization(req.origin, req.credentials, req.scope);
    for (let attempt = 0; ; attempt++) {
      const res = await this.send(req, auth);
      if (res.status !== 401) return res;
      res.body.resume();
      const challenge = parseChallenge(res.headers['www-authenticate']) ?? null;
      this.challenges.set(req.origin.base, challenge);
      if (attempt > 0 || !replayable || !challenge) throw new UnauthorizedError(req.origin.host);
      if (challenge.scheme === 'bearer') this.dropTokens(req.credentials, challenge, req.scope);
      const next = await this.authorization(req.origin, req.credentials, req.scope ?? challenge.scope);
      if (next === auth && challenge.scheme === 'basic') throw new UnauthorizedError(req.origin.host);
      auth = next;
    }
  }

  /**
   * The `GET /v2/` ping: resolves when the origin accepts `credentials` (or needs none), throws an
   * {@link UnauthorizedError} (a Basic challenge) when it does not. Anonymous clients get the answer
   * the origin gives them — a challenge whenever it challenges, Basic or Bearer — and not the 200 an
   * anonymous token would earn: skopeo, podman and CRI-O send credentials only after a challenge at
   * the ping, so a 200 there left them pulling private images anonymously (issue #12 item 1).
   * Clients with credentials: Basic origins are asked directly, Bearer origins for a token.
   */
  async ping(origin: Origin, credentials: ClientCredentials, signal?: AbortSignal): Promise<void> {
    if (credentials.isAnonymous) {
      const res = await this.send({ origin, method: 'GET', path: '/v2/', credentials, signal }, undefined);
      res.body.resume();
      if (res.status === 401) {
        this.challenges.set(origin.base, parseChallenge(res.headers['www-authenticate']) ?? null);
        throw new UnauthorizedError(origin.host);
      }
      if (res.status >= 500) throw new BadOriginResponseError(`origin answered ${res.status} to /v2/`);
      return;
    }
    const res = await this.request({ origin, method: 'GET', path: '/v2/', credentials, signal });
    res.body.resume();
    if (res.status >= 500) throw new BadOriginResponseError(`origin answered ${res.status} to /v2/`);
  }

  private async learnChallenge(origin: Origin, signal?: AbortSignal): Promise<void> {
    const res = await this.send({ origin, method: 'GET', path: '/v2/', credentials: ClientCredentials.anonymous, signal }, undefined);
    res.body.resume();
    this.challenges.set(origin.base, res.status === 401 ? (parseChallenge(res.headers['www-authenticate']) ?? null) : null);
  }

  private async authorization(origin: Origin, creds: ClientCredentials, scope: string | undefined): Promise<string | undefined> {
    const challenge = this.challenges.get(origin.base);
    if (!challenge) return challenge === null ? creds.header : undefined;
    if (challenge.scheme === 'basic') return creds.header;
    return `Bearer ${await this.token(origin, creds, challenge, scope ?? challenge.scope)}`;
  }

  private tokenKey(creds: ClientCredentials, challenge: AuthChallenge, scope: string | undefined): string {
    return `${creds.key}|${challenge.realm}|${challenge.service ?? ''}|${scope ?? ''}`;
  }

  private dropTokens(creds: ClientCredentials, challenge: AuthChallenge, scope: string | undefined): void {
    this.tokens.delete(this.tokenKey(creds, challenge, scope ?? challenge.scope));
  }

  private async token(origin: Origin, creds: ClientCredentials, challenge: AuthChallenge, scope: string | undefined): Promise<string> {
    const token = await this.tokens.fetch(this.tokenKey(creds, challenge, scope), { context: { origin, creds, challenge, scope } });
    // fetch() resolves undefined only when the fetch was aborted, which ignoreFetchAbort rules out.
    if (token === undefined) throw new BadOriginResponseError('token request abandoned');
    return token;
  }

  private async fetchToken(
    origin: Origin,
    creds: ClientCredentials,
    challenge: AuthChallenge,
    scope: string | undefined,
  ): Promise<{ token: string; expiresIn: number }> {
    if (!challenge.realm) throw new BadOriginResponseError('bearer challenge without realm');
    let url: URL;
    try {
      url = new URL(challenge.realm);
    } catch {
      throw new BadOriginResponseError('bearer challenge with an invalid realm');
    }
    if (challenge.service) url.searchParams.set('service', challenge.service);
    if (scope) url.searchParams.set('scope', scope);
    const headers: Record<string, string> = {};
    if (creds.header) headers.authorization = creds.header;
    const res = await this.dispatch({ origin: url.origin, path: url.pathname + url.search, method: 'GET', headers }, origin);
    const text = await readLimited(res.body, 1024 * 1024).catch((err: unknown) => {
      throw originBodyError(err);
    });
    if (res.status === 401 || res.status === 403) throw new UnauthorizedError(origin.host, 'credentials rejected by the origin');
    if (res.status !== 200) throw new BadOriginResponseError(`token endpoint answered ${res.status}`);
    let parsed: { token?: string; access_token?: string; expires_in?: number };
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      throw new BadOriginResponseError('token endpoint answered invalid JSON');
    }
    const token = parsed.token ?? parsed.access_token;
    if (!token) throw new BadOriginResponseError('token endpoint answered no token');
    return { token, expiresIn: typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : 60 };
  }

  private async send(req: OriginRequest, auth: string | undefined): Promise<OriginResponse> {
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers ?? {}))
      if (v !== undefined && !HOP_BY_HOP.has(k.toLowerCase())) headers[k.toLowerCase()] = v;
    if (auth) headers.authorization = auth;
    // `base` is a URL origin (scheme://host:port), as undici wants it; redirects may change it.
    let base = req.origin.base;
    let path = req.path;
    for (let hop = 0; ; hop++) {
      const res = await this.dispatch({ origin: base, path, method: req.method, headers, body: req.body, signal: req.signal }, req.origin);
      const location = res.headers.location;
      if (!req.followRedirects || ![301, 302, 303, 307, 308].includes(res.status) || typeof location !== 'string' || hop >= MAX_REDIRECTS)
        return res;
      res.body.resume();
      const next = new URL(location, base + path);
      if (next.origin !== base) delete headers.authorization;
      base = next.origin;
      path = next.pathname + next.search;
    }
  }

  private async dispatch(options: Dispatcher.RequestOptions, origin: Origin): Promise<OriginResponse> {
    try {
      const res = await this.dispatcher.request(options);
      // The one log line for an origin that fails mid-body (went silent past the body timeout, or
      // closed): whoever reads the body cuts its client, but would not say why. Not for bodies we
      // drop ourselves (undici reports a destroy() or an abort as UND_ERR_ABORTED).
      res.body.once('error', (err: Error & { code?: string }) => {
        if (err instanceof undiciErrors.UndiciError && err.code !== 'UND_ERR_ABORTED') {
          this.logger.warn({
            msg: 'origin failed mid-body',
            method: options.method,
            origin: origin.host,
            path: redactPath(options.path),
            digest: blobDigestIn(options.path),
            reason: err.code,
          });
        }
      });
      return { status: res.statusCode, headers: res.headers, body: res.body };
    } catch (err) {
      if (options.signal && (options.signal as AbortSignal).aborted) throw err;
      const e = err as Error & { code?: string };
      this.logger.warn({
        msg: 'origin request failed',
        method: options.method,
        origin: origin.host,
        path: redactPath(options.path),
        digest: blobDigestIn(options.path),
        reason: e.code ?? e.name,
      });
      if (err instanceof undiciErrors.UndiciError || /^E[A-Z]+/.test(e.code ?? '')) throw new OriginUnavailableError(e.code ?? e.message);
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}

/**
 * An error from reading an origin response body as the OCI error to answer with: origin trouble
 * (body timeout, connection lost) is a 503 UNAVAILABLE like any other unreachable origin; anything
 * else is returned unchanged.
 */
export function originBodyError(err: unknown): unknown {
  if (err instanceof undiciErrors.UndiciError) return new OriginUnavailableError((err as Error & { code?: string }).code ?? err.name);
  return err;
}

/** Headers of an origin response that may be passed to the client (hop-by-hop ones removed). */
export function forwardableHeaders(headers: HeaderMap): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !HOP_BY_HOP.has(k.toLowerCase())) out[k.toLowerCase()] = v;
  return out;
}

function redactPath(path: string): string {
  const q = path.indexOf('?');
  return q < 0 ? path : `${path.slice(0, q)}?…`;
}

/** The digest of a blob path (`…/blobs/sha256:…`), for the log's `digest` field; undefined for other paths. */
function blobDigestIn(path: string): string | undefined {
  return /\/blobs\/(sha256:[0-9a-f]{64})/.exec(path)?.[1];
}

/** Reads a small body (tokens, manifests) with a hard cap; over the cap → undefined body error. */
async function readLimited(body: Readable, limit: number): Promise<string> {
  return (await readLimitedBuffer(body, limit)).toString('utf8');
}

export async function readLimitedBuffer(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) {
      body.destroy();
      throw new BodyTooLargeError(limit);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`body larger than ${limit} bytes`);
    this.name = 'BodyTooLargeError';
  }
}
