import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ClientIdleWatchdog } from './client-idle.watchdog.js';

/** A loopback connection: `server` is the side the watchdog watches, `client` the reader. */
async function pair(): Promise<{ srv: Server; server: Socket; client: Socket }> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const accepted = once(srv, 'connection');
  const client = connect((srv.address() as { port: number }).port, '127.0.0.1');
  const [server] = (await accepted) as [Socket];
  client.on('error', () => undefined);
  server.on('error', () => undefined);
  return { srv, server, client };
}

/** Writes into `socket` whenever it drains, until it closes. */
function flood(socket: Socket): void {
  const chunk = Buffer.alloc(256 * 1024);
  const write = () => {
    while (!socket.destroyed && socket.write(chunk));
  };
  socket.on('drain', write);
  write();
}

describe(ClientIdleWatchdog.name, () => {
  const open: { srv: Server; server: Socket; client: Socket }[] = [];
  afterEach(() => {
    for (const p of open.splice(0)) {
      p.client.destroy();
      p.server.destroy();
      p.srv.close();
    }
  });

  it('cuts a client that takes no bytes for the timeout', async () => {
    const p = await pair();
    open.push(p);
    p.client.pause();
    const watchdog = new ClientIdleWatchdog(300);
    const started = Date.now();
    let idleAfter = -1;
    watchdog.watch(p.server, () => {
      idleAfter = Date.now() - started;
      p.server.destroy();
    });
    flood(p.server);
    await expect.poll(() => idleAfter, { timeout: 10_000 }).toBeGreaterThanOrEqual(300);
    expect(watchdog.size).toBe(0);
  });

  it('leaves alone a slow client that keeps taking bytes, and a response waiting on its source', async () => {
    const slow = await pair();
    const waiting = await pair();
    open.push(slow, waiting);
    const watchdog = new ClientIdleWatchdog(300);
    let cut = 0;
    watchdog.watch(slow.server, () => cut++);
    watchdog.watch(waiting.server, () => cut++);
    flood(slow.server);
    // The slow client reads for 10 ms every 100 ms; the other connection has nothing to send.
    slow.client.pause();
    const reader = setInterval(() => {
      slow.client.resume();
      setTimeout(() => slow.client.pause(), 10);
    }, 100);
    await new Promise((r) => setTimeout(r, 1500));
    clearInterval(reader);
    expect(cut).toBe(0);
    expect(watchdog.size).toBe(2);
  });

  it('stops watching a closed socket, and never cuts with timeout 0', async () => {
    const p = await pair();
    open.push(p);
    const watchdog = new ClientIdleWatchdog(300);
    watchdog.watch(p.server, () => undefined);
    expect(watchdog.size).toBe(1);
    p.server.destroy();
    await once(p.server, 'close');
    expect(watchdog.size).toBe(0);
    expect(new ClientIdleWatchdog(0).watch(p.client, () => undefined)).toBeTypeOf('function');
  });
});
