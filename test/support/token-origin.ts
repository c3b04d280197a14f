import { execFile } from 'node:child_process';
import { randomUUID, sign } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './app-process.js';
import { startOriginRegistry } from './origin-registry.js';

const exec = promisify(execFile);

export interface TokenOrigin {
  /** http://127.0.0.1:<port> of the registry. */
  url: string;
  /** 127.0.0.1:<port> (what skopeo, containerd and `?ns=` use). */
  host: string;
  port: number;
  pid: number;
  /** Every request the token server answered: the Authorization it got (redacted to its user) and the scope. */
  tokenRequests: { auth: 'none' | 'valid' | 'invalid'; user?: string; scope: string | null; status: number }[];
  /** The registry's stderr (its access log). */
  log(): string;
  stop(): Promise<void>;
}

export interface TokenOriginOptions {
  /** The one user the token server knows; it may pull and push everywhere. */
  user: { username: string; password: string };
  /** Repositories under this prefix are readable anonymously, like public images on Docker Hub. Default `public/`. */
  publicPrefix?: string;
}

const SERVICE = 'p2p-test-registry';
const ISSUER = 'p2p-test-token-issuer';

/**
 * CNCF Distribution with token auth (`auth: token`) and its token server, the way Docker Hub,
 * GHCR, Quay, Harbor and GitLab work: `GET /v2/` without a token answers 401 with a Bearer
 * challenge; the token server hands anonymous tokens to anyone (pull on `public/*` only, nothing
 * elsewhere) and full tokens for the user's Basic credentials; wrong credentials get a 401. Tokens
 * are RS256 JWTs carrying their self-signed certificate in `x5c`, the certificate being the
 * registry's `rootcertbundle`.
 */
export async function startTokenOrigin(options: TokenOriginOptions): Promise<TokenOrigin> {
  const dir = await tempDir('p2p-token-origin-');
  const keyFile = join(dir, 'key.pem');
  const certFile = join(dir, 'cert.pem');
  await exec('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-days',
    '2',
    '-subj',
    '/CN=p2p-test-token-issuer',
  ]);
  const key = await readFile(keyFile, 'utf8');
  const certDer = (await readFile(certFile, 'utf8')).replace(/-----[^-]+-----|\s/g, '');
  const publicPrefix = options.publicPrefix ?? 'public/';
  const expected = `Basic ${Buffer.from(`${options.user.username}:${options.user.password}`).toString('base64')}`;
  const tokenRequests: TokenOrigin['tokenRequests'] = [];

  const b64url = (v: Buffer | string) => Buffer.from(v).toString('base64url');
  const token = (user: string | undefined, scopes: string[]) => {
    const access = scopes.flatMap((scope) => {
      const [type, name, actions] = scope.split(':');
      if (type !== 'repository' || !name) return [];
      const granted = user ? actions.split(',') : name.startsWith(publicPrefix) ? actions.split(',').filter((a) => a === 'pull') : [];
      return [{ type, name, actions: granted }];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'RS256', x5c: [certDer] }));
    const claims = b64url(
      JSON.stringify({ iss: ISSUER, sub: user ?? '', aud: SERVICE, exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access }),
    );
    const signature = b64url(sign('RSA-SHA256', Buffer.from(`${header}.${claims}`), key));
    return `${header}.${claims}.${signature}`;
  };

  const tokenServer: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const scopes = url.searchParams.getAll('scope');
    const auth = req.headers.authorization;
    // Any Authorization but the right one is refused, empty credentials included: a registry
    // client that forwards what it got must not turn "anonymous" into "rejected".
    const kind = auth === undefined ? 'none' : auth === expected ? 'valid' : 'invalid';
    const status = kind === 'invalid' ? 401 : 200;
    tokenRequests.push({ auth: kind, user: kind === 'valid' ? options.user.username : undefined, scope: scopes.join(' ') || null, status });
    if (status === 401) return res.writeHead(401, { 'www-authenticate': 'Basic realm="token"' }).end();
    const t = token(kind === 'valid' ? options.user.username : undefined, scopes);
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ token: t, access_token: t, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((r) => tokenServer.listen(0, '127.0.0.1', r));
  const realm = `http://127.0.0.1:${(tokenServer.address() as { port: number }).port}/token`;

  const closeTokenServer = async () => {
    tokenServer.closeAllConnections();
    await new Promise<void>((r) => tokenServer.close(() => r()));
  };
  let origin;
  try {
    origin = await startOriginRegistry({
      dir,
      authYaml: `auth:\n  token:\n    realm: ${realm}\n    service: ${SERVICE}\n    issuer: ${ISSUER}\n    rootcertbundle: ${certFile}\n`,
    });
  } catch (err) {
    await closeTokenServer();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const registry = origin;
  const stop = async () => {
    await registry.stop();
    await closeTokenServer();
    await rm(dir, { recursive: true, force: true });
  };
  return { url: registry.url, host: registry.host, port: registry.port, pid: registry.pid, tokenRequests, log: () => registry.log(), stop };
}
