import { createConnection, createServer, type Socket } from 'node:net';

/**
 * A loopback TCP forwarder in front of an origin registry that can drop one connection mid-blob:
 * armed for a digest, the next connection that sends `GET …/blobs/<digest>` is cut after
 * `afterBytes` bytes of the answer (0: before any). Only whole-blob GETs are cut (no Range header:
 * a fill from byte 0, as the proxy's); a fetch resumed by Range — the agent's own fallback to the
 * origin — and everything else pass through untouched, so agents and proxies share one origin URL.
 */
export interface CuttingTcpProxy {
  /** http://127.0.0.1:<port> */
  url: string;
  port: number;
  /** Cuts the next `times` connections that GET `digest`, each after `afterBytes` response bytes. */
  arm(digest: string, afterBytes: number, times?: number): void;
  /** Wall-clock times (Date.now()) of the cuts made so far. */
  cuts: number[];
  stop(): Promise<void>;
}

export async function startCuttingTcpProxy(target: () => number): Promise<CuttingTcpProxy> {
  let armed: { digest: string; afterBytes: number; times: number } | undefined;
  const cuts: number[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port: target() });
    sockets.add(client).add(upstream);
    let answered = 0;
    let cutAt: number | undefined;
    const cut = () => {
      cuts.push(Date.now());
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      if (armed && cutAt === undefined && text.startsWith('GET ') && text.includes(`/blobs/${armed.digest}`) && !/\r\nrange:/i.test(text)) {
        cutAt = answered + armed.afterBytes;
        if (--armed.times <= 0) armed = undefined;
        if (cutAt === answered) {
          cut();
          return;
        }
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (cutAt !== undefined && answered + chunk.length >= cutAt) {
        client.write(chunk.subarray(0, cutAt - answered));
        answered = cutAt;
        cut();
        return;
      }
      answered += chunk.length;
      client.write(chunk);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', close).on('error', close);
    upstream.on('close', close).on('error', close);
  });
  const port = await new Promise<number>((res) => {
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      res(typeof addr === 'object' && addr ? addr.port : 0);
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    cuts,
    arm(digest, afterBytes, times = 1) {
      armed = { digest, afterBytes, times };
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((res) => server.close(() => res()));
    },
  };
}
