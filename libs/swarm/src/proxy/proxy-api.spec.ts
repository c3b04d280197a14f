import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SWARM_TOKEN_HEADER } from '#ops';
import { PEER_PORT_HEADER, ProxyApiClient, type ProxyBlobQuery } from './proxy-api.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;
const BLOB: ProxyBlobQuery = { digest: DIGEST, repository: 'team/app', ns: 'registry.example', authorization: 'Basic eDp5' };

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A proxy stand-in recording the requests it gets. */
async function proxy(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; seen: IncomingMessage[] }> {
  const seen: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    seen.push(req);
    handler(req, res);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

const client = new ProxyApiClient({ dispatcher: undefined, swarmToken: 'tok' });
const opts = { signal: new AbortController().signal, timeoutMs: 5000 };

describe('ProxyApiClient', () => {
  it('asks for the torrent at the path, query and headers the proxy controller serves, and reads the peer port', async () => {
    const p = await proxy((_req, res) => {
      res.writeHead(200, { [PEER_PORT_HEADER]: '6882', 'content-type': 'application/x-bittorrent' });
      res.end('d4:infoe');
    });
    const answer = await client.torrent(p.url, BLOB, opts);
    expect(answer).toEqual({ ok: true, metainfo: Buffer.from('d4:infoe'), peerPort: 6882 });
    const req = p.seen[0];
    expect(req?.url).toBe(`/v1/blobs/${DIGEST}/torrent?repo=team%2Fapp&ns=registry.example`);
    expect(req?.headers[SWARM_TOKEN_HEADER]).toBe('tok');
    expect(req?.headers.authorization).toBe('Basic eDp5');
  });

  it('an error answer is a refusal with its OCI code and reason; a torrent without a valid peer port throws', async () => {
    const refusing = await proxy((_req, res) => {
      res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'm', detail: { reason: 'origin dropped' } }] }));
    });
    expect(await client.torrent(refusing.url, BLOB, opts)).toEqual({ ok: false, status: 502, reason: ': UNAVAILABLE origin dropped' });
    const portless = await proxy((_req, res) => res.end('d4:infoe'));
    await expect(client.torrent(portless.url, BLOB, opts)).rejects.toThrow(`no valid ${PEER_PORT_HEADER} header`);
  });

  it('relays a range: sends Range, accepts only a 206 for that range (or 200 for the whole blob)', async () => {
    const p = await proxy((req, res) => {
      if (req.headers.range === 'bytes=10-19') {
        res.writeHead(206, { 'content-range': 'bytes 10-19/100' });
        res.end('0123456789');
      } else {
        res.writeHead(206, { 'content-range': 'bytes 0-99/100' });
        res.end('x'.repeat(100));
      }
    });
    const ranged = await client.relay(p.url, BLOB, { ...opts, offset: 10, end: 20 });
    if (!ranged.ok) throw new Error('expected a relay');
    let text = '';
    for await (const chunk of ranged.body) text += String(chunk);
    expect(text).toBe('0123456789');
    expect(p.seen[0]?.url).toBe(`/v1/blobs/${DIGEST}?repo=team%2Fapp&ns=registry.example`);
    // A proxy answering another range than asked is no relay.
    expect(await client.relay(p.url, BLOB, { ...opts, offset: 5 })).toEqual({ ok: false, status: 206, reason: '' });
  });
});
