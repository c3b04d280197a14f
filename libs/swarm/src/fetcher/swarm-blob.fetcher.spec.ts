import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { ClientCredentials, type BlobRequest } from '#registry';
import { systemClock } from '#ops';
import { FakeBlobSeeder } from '../testing/fake-blob-seeder.js';
import { FakeProxyRing } from '../testing/fake-proxy-ring.js';
import { FakeSwarmClient } from '../testing/fake-swarm-client.js';
import { SwarmBlobFetcher } from './swarm-blob.fetcher.js';

const DIGEST = `sha256:${'c'.repeat(64)}`;
const SIZE = 4 * 1024 * 1024;

/** A proxy stand-in on loopback: `handle` answers every request; `seen` lists request paths. */
async function fakeProxy(handle: (req: IncomingMessage, res: ServerResponse) => void) {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(req.url ?? '');
    handle(req, res);
  });
  const port = await new Promise<number>((res) => server.listen(0, '127.0.0.1', () => res((server.address() as { port: number }).port)));
  return { server, url: `http://127.0.0.1:${port}`, seen };
}

/** The real proxy API client over loopback, with the ring, swarm and seeder in memory. */
function fetcher(ring: FakeProxyRing) {
  return new SwarmBlobFetcher({
    ring,
    swarm: new FakeSwarmClient(systemClock),
    seeder: new FakeBlobSeeder(),
    downloadDir: '/nonexistent',
    swarmToken: 'token',
    minSize: 1,
    torrentTimeoutMs: 60_000,
    relayAfterMs: 50,
    // As in the agent: relay bytes go through a throttle stream.
    relayThrottle: () => new PassThrough(),
  });
}

const request: BlobRequest = {
  origin: { base: 'http://origin.invalid', host: 'origin.invalid' },
  repository: 'team/app',
  digest: DIGEST,
  credentials: ClientCredentials.anonymous,
  size: SIZE,
};

describe(SwarmBlobFetcher.name, () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r) ?? r(undefined));
    server = undefined;
  });

  it('a relay that breaks off mid-body fails the stream at once, and the proxy is not marked down (issue #12 item 6)', async () => {
    const proxy = await fakeProxy((req, res) => {
      // The torrent never comes (the proxy is still filling); the relay sends 1 MiB, then the
      // proxy's origin fetch drops and it cuts the connection.
      if (req.url?.includes('/torrent')) return;
      res.writeHead(200, { 'content-length': String(SIZE) });
      res.write(Buffer.alloc(1024 * 1024), () => setTimeout(() => res.destroy(), 20));
    });
    server = proxy.server;
    const ring = new FakeProxyRing([proxy.url]);
    const f = fetcher(ring);
    const ac = new AbortController();
    const fetched = await f.fetch(request, 0, ac.signal);
    expect(fetched).toBeDefined();
    const started = Date.now();
    const failure = await new Promise<Error | undefined>((resolve) => {
      const stream = fetched!.stream;
      stream
        .on('data', () => undefined)
        .on('error', resolve)
        .on('end', () => resolve(undefined));
    });
    const ms = Date.now() - started;
    ac.abort(failure);
    // Before: the relay was pipe()d into the throttle, which never ended: the fill waited out its
    // stall timeout (10 s by default).
    expect(failure).toBeInstanceOf(Error);
    expect(ms).toBeLessThan(2000);
    expect(ring.markedDown).toEqual([]);
    // The relay fallback does not ask the proxy again for this blob: the origin serves the rest.
    const before = proxy.seen.length;
    expect(await f.relayFallback().fetch(request, 1024 * 1024, new AbortController().signal)).toBeUndefined();
    expect(proxy.seen.length).toBe(before);
    // Once the fill is over, the blob may go through the proxy again.
    f.settled(DIGEST, true);
  });

  it('a proxy answering 502 for the blob sends it to the origin at once: no retries, counted per blob, not marked down', async () => {
    const proxy = await fakeProxy((req, res) => {
      const body = JSON.stringify({
        errors: [{ code: 'UNAVAILABLE', message: 'origin transfer of the blob failed', detail: { reason: 'other side closed' } }],
      });
      // The torrent answer comes late (the proxy waited for its fill), the relay's at once.
      setTimeout(() => res.writeHead(502, { 'content-type': 'application/json' }).end(body), req.url?.includes('/torrent') ? 300 : 0);
    });
    server = proxy.server;
    const ring = new FakeProxyRing([proxy.url]);
    const f = fetcher(ring);
    const started = Date.now();
    expect(await f.fetch(request, 0, new AbortController().signal)).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(2000);
    expect(ring.blobFailures).toEqual([`${proxy.url} ${DIGEST}`]);
    expect(ring.markedDown).toEqual([]);
    const before = proxy.seen.length;
    expect(await f.relayFallback().fetch(request, 0, new AbortController().signal)).toBeUndefined();
    expect(proxy.seen.length).toBe(before);
  });
});
