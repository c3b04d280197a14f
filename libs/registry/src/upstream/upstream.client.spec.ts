import { createServer, type IncomingMessage, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnauthorizedError } from '../oci/oci.errors.js';
import { ClientCredentials } from './client-credentials.js';
import { UpstreamClient } from './upstream.client.js';
import type { Upstream } from './upstream-set.js';
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
      return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: `${generation}|${user}|${url.searchParams.get('scope')}`, expires_in: 300 }));
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
      return { base, host: base.slice(7) } satisfies Upstream;
    },
  };
}

describe(UpstreamClient.name, () => {
  const fake = fakeBearerRegistry();
  let upstream: Upstream;
  const client = new UpstreamClient({ connectTimeoutMs: 2000, headersTimeoutMs: 2000 });
  const get = async (repo: string, credentials: ClientCredentials) => {
    const res = await client.request({ upstream, method: 'GET', path: `/v2/${repo}/blobs/sha256:${'a'.repeat(64)}`, credentials, scope: `repository:${repo}:pull` });
    const chunks: Buffer[] = [];
    for await (const c of res.body) chunks.push(c as Buffer);
    return { status: res.status, body: Buffer.concat(chunks).toString() };
  };

  beforeAll(async () => {
    upstream = await fake.start();
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

  it('retries once with a fresh token when the origin rejects a cached one', async () => {
    const dave = ClientCredentials.fromHeader(basic('dave', 'pw'));
    const before = fake.tokenRequests.length;
    fake.revoke();
    expect(await get('priv/app', dave)).toEqual({ status: 200, body: 'hello' });
    expect(fake.tokenRequests.length).toBe(before + 1);
  });

  it('never keeps the secret in cache keys', () => {
    const creds = ClientCredentials.fromHeader(basic('dave', 'pw'));
    expect(creds.key).toMatch(/^[a-f0-9]{64}$/);
    expect(JSON.stringify({ creds })).not.toContain('ZGF2ZTpwdw');
  });
});

describe('parseChallenge', () => {
  it('reads Bearer and Basic challenges', () => {
    expect(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"')).toEqual({
      scheme: 'bearer',
      realm: 'https://auth.docker.io/token',
      service: 'registry.docker.io',
      scope: 'repository:library/nginx:pull',
    });
    expect(parseChallenge('Basic realm="basic-realm"')).toMatchObject({ scheme: 'basic', realm: 'basic-realm' });
    expect(parseChallenge('Negotiate')).toBeUndefined();
  });
});
