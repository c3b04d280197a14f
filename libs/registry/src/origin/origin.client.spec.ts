import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Logger } from '@nestjs/common';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { UnauthorizedError } from '../oci/oci.errors.js';
import { ClientCredentials } from './client-credentials.js';
import { DEFAULT_BODY_TIMEOUT_MS, originBodyError, OriginClient } from './origin.client.js';
import type { Origin } from './origin-set.js';
import { parseChallenge } from './www-authenticate.js';

const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

/**
 * A fake Docker-Hub-style registry (no real Bearer registry runs offline here): a token endpoint
 * issuing per-user, per-scope tokens, and a registry that checks them. `pub/*` is readable anonymously.
 */
function fakeBearerRegistry() {
  const tokenRequests: { user: string; scope: string | null }[] = [];
  let generation = 1;
  let base = '';
  const server: Server = createServer((req: IncomingMessage, res) => {
    const url = new URL(req.url!, 'http://x');
    if (url.pathname === '/token') {
      let user = 'anon';
      if (req.headers.authorization) {
        if (req.headers.authorization !== basic('dave', 'pw')) return res.writeHead(401).end();
        user = 'dave';
      }
      tokenRequests.push({ user, scope: url.searchParams.get('scope') });
      return res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ token: `${generation}|${user}|${url.searchParams.get('scope')}`, expires_in: 300 }));
    }
    if (url.pathname === '/v2/') {
      // Like Docker Hub: the ping wants a token (any scope); without one it challenges.
      if (Number((req.headers.authorization ?? '').replace(/^Bearer /, '').split('|')[0]) === generation)
        return res.writeHead(200).end('{}');
      return res.writeHead(401, { 'www-authenticate': `Bearer realm="${base}/token",service="fake"` }).end();
    }
    const repo = /^\/v2\/(.+)\/blobs\//.exec(url.pathname)?.[1];
    const scope = `repository:${repo}:pull`;
    const [gen, user, tokenScope] = (req.headers.authorization ?? '').replace(/^Bearer /, '').split('|');
    const ok = Number(gen) === generation && tokenScope === scope && (repo?.startsWith('pub/') || user === 'dave');
    if (!ok) return res.writeHead(401, { 'www-authenticate': `Bearer realm="${base}/token",service="fake",scope="${scope}"` }).end();
    res.writeHead(200, { 'content-length': '5' }).end('hello');
  });
  return {
    server,
    tokenRequests,
    revoke: () => generation++,
    async start() {
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      return { base, host: base.slice(7) } satisfies Origin;
    },
  };
}

describe(OriginClient.name, () => {
  const fake = fakeBearerRegistry();
  let origin: Origin;
  const client = new OriginClient({ connectTimeoutMs: 2000, headersTimeoutMs: 2000 });
  const get = async (repo: string, credentials: ClientCredentials) => {
    const res = await client.request({
      origin,
      method: 'GET',
      path: `/v2/${repo}/blobs/sha256:${'a'.repeat(64)}`,
      credentials,
      scope: `repository:${repo}:pull`,
    });
    const chunks: Buffer[] = [];
    for await (const c of res.body) chunks.push(c as Buffer);
    return { status: res.status, body: Buffer.concat(chunks).toString() };
  };

  beforeAll(async () => {
    origin = await fake.start();
  });
  afterAll(async () => {
    await client.close();
    fake.server.close();
  });

  it('uses anonymous Bearer tokens for public repos and caches them per scope', async () => {
    expect(await get('pub/one', ClientCredentials.anonymous)).toEqual({ status: 200, body: 'hello' });
    expect(await get('pub/one', ClientCredentials.anonymous)).toEqual({ status: 200, body: 'hello' });
    expect(fake.tokenRequests).toEqual([{ user: 'anon', scope: 'repository:pub/one:pull' }]);
  });

  it('exchanges client Basic credentials for a token, per credentials, and refuses private repos without them', async () => {
    await expect(get('priv/app', ClientCredentials.anonymous)).rejects.toBeInstanceOf(UnauthorizedError);
    const dave = ClientCredentials.fromHeader(basic('dave', 'pw'));
    expect(await get('priv/app', dave)).toEqual({ status: 200, body: 'hello' });
    expect(await get('priv/app', dave)).toEqual({ status: 200, body: 'hello' });
    expect(fake.tokenRequests.filter((t) => t.user === 'dave')).toHaveLength(1);
    await expect(get('priv/app', ClientCredentials.fromHeader(basic('dave', 'nope')))).rejects.toSatisfy(
      (e: unknown) => e instanceof UnauthorizedError && /^Basic realm=/.test(e.headers['www-authenticate']),
    );
  });

  it('asks the token endpoint once for concurrent requests of one scope', async () => {
    const before = fake.tokenRequests.length;
    const results = await Promise.all(Array.from({ length: 20 }, () => get('pub/many', ClientCredentials.anonymous)));
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(fake.tokenRequests.slice(before)).toEqual([{ user: 'anon', scope: 'repository:pub/many:pull' }]);
  });

  it('retries once with a fresh token when the origin rejects a cached one', async () => {
    const dave = ClientCredentials.fromHeader(basic('dave', 'pw'));
    const before = fake.tokenRequests.length;
    fake.revoke();
    expect(await get('priv/app', dave)).toEqual({ status: 200, body: 'hello' });
    expect(fake.tokenRequests.length).toBe(before + 1);
  });

  it('ping: an anonymous client gets a Basic challenge from a Bearer origin (not the 200 an anonymous token earns); credentials are checked (issue #12 item 1)', async () => {
    const before = fake.tokenRequests.length;
    await expect(client.ping(origin, ClientCredentials.anonymous)).rejects.toSatisfy(
      (e: unknown) => e instanceof UnauthorizedError && /^Basic realm=/.test(e.headers['www-authenticate']),
    );
    // Empty Basic credentials are what skopeo sends after a challenge when it holds none: anonymous.
    expect(ClientCredentials.fromHeader(basic('', '')).isAnonymous).toBe(true);
    await expect(client.ping(origin, ClientCredentials.fromHeader(basic('', '')))).rejects.toBeInstanceOf(UnauthorizedError);
    expect(fake.tokenRequests.length).toBe(before);
    await expect(client.ping(origin, ClientCredentials.fromHeader(basic('dave', 'pw')))).resolves.toBeUndefined();
    await expect(client.ping(origin, ClientCredentials.fromHeader(basic('dave', 'nope')))).rejects.toBeInstanceOf(UnauthorizedError);
    // Public content still reads anonymously after the ping said 401.
    expect(await get('pub/two', ClientCredentials.anonymous)).toEqual({ status: 200, body: 'hello' });
  });

  it('never keeps the secret in cache keys', () => {
    const creds = ClientCredentials.fromHeader(basic('dave', 'pw'));
    expect(creds.key).toMatch(/^[a-f0-9]{64}$/);
    expect(JSON.stringify({ creds })).not.toContain('ZGF2ZTpwdw');
  });
});

describe('parseChallenge', () => {
  it('reads Bearer and Basic challenges', () => {
    expect(
      parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"'),
    ).toEqual({
      scheme: 'bearer',
      realm: 'https://auth.docker.io/token',
      service: 'registry.docker.io',
      scope: 'repository:library/nginx:pull',
    });
    expect(parseChallenge('Basic realm="basic-realm"')).toMatchObject({ scheme: 'basic', realm: 'basic-realm' });
    expect(parseChallenge('Negotiate')).toBeUndefined();
  });
});

/** A plain origin (no auth) whose handler each test sets. */
function plainOrigin() {
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.end();
  const server = createServer((req, res) => handler(req, res));
  return {
    server,
    handle(h: typeof handler) {
      handler = h;
    },
    async start(): Promise<Origin> {
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      return { base, host: base.slice(7) };
    },
  };
}

describe('OriginClient with a misbehaving or strict origin (issue #12 items 4, 5)', () => {
  const fake = plainOrigin();
  let origin: Origin;
  const client = new OriginClient({ connectTimeoutMs: 2000, headersTimeoutMs: 2000, bodyTimeoutMs: 300 });

  beforeAll(async () => {
    origin = await fake.start();
  });
  afterAll(async () => {
    await client.close();
    fake.server.closeAllConnections();
    fake.server.close();
  });

  it("does not pass the client's Expect: 100-continue on (undici refuses it: every curl push got a 503)", async () => {
    const seen: IncomingMessage['headers'][] = [];
    fake.handle((req, res) => {
      seen.push(req.headers);
      req.resume();
      req.on('end', () => res.writeHead(201).end());
    });
    const body = Buffer.alloc(2 * 2 ** 20, 7);
    for (const [method, b] of [
      ['PUT', body],
      ['HEAD', undefined],
      ['GET', undefined],
    ] as const) {
      const res = await client.request({
        origin,
        method,
        path: '/v2/a/blobs/uploads/x',
        credentials: ClientCredentials.anonymous,
        headers: { expect: '100-continue', 'content-length': b ? String(b.length) : undefined },
        body: b,
      });
      res.body.resume();
      expect(res.status).toBe(201);
    }
    expect(seen.map((h) => h.expect)).toEqual([undefined, undefined, undefined]);
    expect(seen[0]['content-length']).toBe(String(body.length));
  });

  it('cuts a body the origin stops sending within the body timeout; that reads as origin trouble (503)', async () => {
    fake.handle((_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('abc'); // …and then silence, like a SIGSTOPped origin
    });
    const res = await client.request({ origin, method: 'GET', path: '/v2/a/blobs/sha256:x', credentials: ClientCredentials.anonymous });
    const started = Date.now();
    let received = 0;
    const read = (async () => {
      for await (const chunk of res.body) received += (chunk as Buffer).length;
      return received;
    })();
    await expect(read).rejects.toMatchObject({ code: 'UND_ERR_BODY_TIMEOUT' });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(originBodyError(await read.catch((e: unknown) => e))).toMatchObject({ status: 503, code: 'UNAVAILABLE' });
  });

  it('warns about an origin failing mid-body, not about a body the reader drops itself', async () => {
    const warn = vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    try {
      fake.handle((_req, res) => {
        res.writeHead(200, { 'content-length': '1000' });
        res.write('abc');
      });
      const dropped = await client.request({
        origin,
        method: 'GET',
        path: '/v2/a/blobs/sha256:dropped',
        credentials: ClientCredentials.anonymous,
      });
      dropped.body.destroy();
      const silent = await client.request({
        origin,
        method: 'GET',
        path: '/v2/a/blobs/sha256:silent',
        credentials: ClientCredentials.anonymous,
      });
      await expect(silent.body.resume().toArray()).rejects.toMatchObject({ code: 'UND_ERR_BODY_TIMEOUT' });
      const lines = warn.mock.calls.map((c) => c[0] as { msg: string });
      expect(lines.filter((l) => l.msg.includes('mid-body'))).toEqual([
        expect.objectContaining({ method: 'GET', path: '/v2/a/blobs/sha256:silent', reason: 'UND_ERR_BODY_TIMEOUT' }),
      ]);
    } finally {
      warn.mockRestore();
    }
  });

  it('has a body timeout by default', () => {
    expect(DEFAULT_BODY_TIMEOUT_MS).toBeGreaterThan(0);
    expect(DEFAULT_BODY_TIMEOUT_MS).toBeLessThanOrEqual(60_000);
  });

  it('does not count a slow reader against the body timeout (backpressure stops the clock)', async () => {
    const size = 16 * 2 ** 20;
    fake.handle((_req, res) => {
      res.writeHead(200, { 'content-length': String(size) });
      res.end(Buffer.alloc(size, 1));
    });
    const res = await client.request({ origin, method: 'GET', path: '/v2/a/blobs/sha256:y', credentials: ClientCredentials.anonymous });
    let n = 0;
    let paused = false;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      n += chunk.length;
      if (!paused && n > 2 ** 20) {
        paused = true;
        // A reader busy for 4 × the body timeout, with the origin's bytes waiting in buffers.
        await new Promise((r) => setTimeout(r, 1200));
      }
    }
    expect(n).toBe(size);
  });
});
