import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli, startApp, tempDir, writeConfig, type AppProcess } from '../support/app-process.js';
import { fileDigest, skopeoPull } from '../support/oci-image.js';
import { startOriginRegistry, type OriginRegistry } from '../support/origin-registry.js';
import { ADMIN, CREDS, metrics, pushLayer, sample, SWARM, USER, type LoopbackCluster } from './cluster.js';

const exec = promisify(execFile);
const MB = 1_000_000;
const BASIC = Buffer.from(CREDS).toString('base64');

/**
 * A throwaway CA and a proxy certificate it signed, plus an unrelated CA. The certificate names
 * `localhost` only, no IP: agents list the proxy by name, the ring dials the address that name
 * resolves to (as with a headless Service), and the certificate must still verify against the name.
 */
async function makeCerts(dir: string) {
  const file = (name: string) => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  for (const ca of ['ca', 'other-ca']) {
    await exec('openssl', [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      file(`${ca}.key`),
      '-out',
      file(`${ca}.crt`),
      '-days',
      '2',
      '-subj',
      `/CN=p2p test ${ca}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
  }
  await exec('openssl', ['req', ...ec, '-keyout', file('proxy.key'), '-out', file('proxy.csr'), '-subj', '/CN=p2p-proxy']);
  await writeFile(file('proxy.ext'), 'subjectAltName=DNS:localhost,DNS:p2p-proxy\nextendedKeyUsage=serverAuth\n');
  await exec('openssl', [
    'x509',
    '-req',
    '-in',
    file('proxy.csr'),
    '-CA',
    file('ca.crt'),
    '-CAkey',
    file('ca.key'),
    '-CAcreateserial',
    '-out',
    file('proxy.crt'),
    '-days',
    '2',
    '-extfile',
    file('proxy.ext'),
  ]);
  return { ca: file('ca.crt'), otherCa: file('other-ca.crt'), cert: file('proxy.crt'), key: file('proxy.key') };
}

/** A TCP listener posing as a proxy: records what each connection sends first, then hangs up. */
async function captureListener(): Promise<{ server: Server; port: number; captured: Buffer[] }> {
  const captured: Buffer[] = [];
  const server = createServer((socket) => {
    socket.once('data', (chunk: Buffer) => {
      captured.push(chunk);
      socket.destroy();
    });
    socket.on('error', () => undefined);
  });
  const port = await new Promise<number>((res) => server.listen(0, '127.0.0.1', () => res((server.address() as { port: number }).port)));
  return { server, port, captured };
}

function p2pBytes(text: string): number {
  return ['peer', 'proxy', 'relay'].reduce((n, s) => n + sample(text, 'p2p_blob_bytes_received_total', `source="${s}"`), 0);
}

const originBytes = (text: string) => sample(text, 'p2p_blob_bytes_fetched_total', 'fetcher="origin"');

describe('issue #12 item 9: TLS between agents and proxies (real processes, openssl-made CA)', () => {
  const started: AppProcess[] = [];
  let origin: OriginRegistry | undefined;
  const servers: Server[] = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((p) => p.stop()));
    await origin?.stop();
    origin = undefined;
    for (const s of servers.splice(0)) s.close();
  });

  async function setup() {
    const dir = await tempDir('p2p-tls-');
    const certs = await makeCerts(dir);
    await writeFile(join(dir, 'swarm-token'), `${SWARM}\n`);
    await writeFile(join(dir, 'admin-token'), `${ADMIN}\n`);
    origin = await startOriginRegistry({ auth: USER });
    const tokens = { swarmTokenFile: join(dir, 'swarm-token'), adminTokenFile: join(dir, 'admin-token') };
    const tracker = await startApp('tracker', { ...tokens, announceRate: 0 });
    started.push(tracker);
    const node = { ...tokens, minFreeSpace: '10MB', registry: origin.url, trackers: [`${tracker.url}/announce`] };
    const agent = async (name: string, config: Record<string, unknown>) => {
      const a = await startApp('agent', { ...node, dataDir: join(dir, name), p2pMinSize: '1MB', ...config });
      started.push(a);
      return a;
    };
    const cluster = { dir, origin } as LoopbackCluster;
    return { dir, certs, node, agent, cluster };
  }

  it('agents with the CA pull P2P over HTTPS; a wrong CA or none refuses the proxy (origin serves, the reason is logged)', async () => {
    const { dir, certs, node, agent, cluster } = await setup();
    const proxy = await startApp('proxy', { ...node, dataDir: join(dir, 'proxy'), tlsCertFile: certs.cert, tlsKeyFile: certs.key });
    started.push(proxy);
    expect(proxy.output()).toMatch(/listening on [^"]*\(HTTPS\)/);
    expect(proxy.output()).not.toMatch(/TLS is off/);
    const proxyUrl = `https://localhost:${proxy.port}`;
    const good = await agent('good', { proxies: [proxyUrl], proxyCaFile: certs.ca });
    const wrong = await agent('wrong', { proxies: [proxyUrl], proxyCaFile: certs.otherCa });
    const none = await agent('none', { proxies: [proxyUrl] });
    for (const a of [good, wrong, none]) expect(a.output()).not.toMatch(/plain HTTP/);

    const layer = await pushLayer(cluster, 'tls/app', 8 * MB);
    const pull = async (a: AppProcess, name: string) => {
      const out = join(dir, `out-${name}`);
      const res = await skopeoPull(`127.0.0.1:${a.port}/tls/app:v1`, out, { creds: CREDS });
      expect(res.ok, res.stderr).toBe(true);
      expect(await fileDigest(join(out, layer.digest.slice(7)))).toBe(layer.digest);
      return metrics(a);
    };

    const viaTls = await pull(good, 'good');
    expect(p2pBytes(viaTls)).toBeGreaterThanOrEqual(layer.size);
    expect(originBytes(viaTls)).toBeLessThan(64 * 1024);

    for (const [a, name] of [
      [wrong, 'wrong'],
      [none, 'none'],
    ] as const) {
      const text = await pull(a, name);
      expect(p2pBytes(text), name).toBe(0);
      expect(originBytes(text), name).toBeGreaterThanOrEqual(layer.size);
      // Why: the certificate did not verify (no request was sent, so no credentials went out).
      expect(a.output(), name).toMatch(/certificate/i);
    }
    console.log(
      `item 9: TLS pull via proxy ${p2pBytes(viaTls)} B; wrong CA and no CA → origin; reasons: ${/self[- ]signed[^"\\]*|unable to [^"\\]*/i.exec(wrong.output())?.[0]}`,
    );
  });

  it('credentials and the swarm token reach a proxy port only inside TLS: a capture sees a ClientHello, never them; over http:// it sees both', async () => {
    const { dir, certs, agent, cluster } = await setup();
    const tlsPort = await captureListener();
    const plainPort = await captureListener();
    servers.push(tlsPort.server, plainPort.server);
    const overTls = await agent('tls', { proxies: [`https://127.0.0.1:${tlsPort.port}`], proxyCaFile: certs.ca });
    const overPlain = await agent('plain', { proxies: [`http://127.0.0.1:${plainPort.port}`] });
    expect(overPlain.output()).toMatch(/plain HTTP/);
    expect(overTls.output()).not.toMatch(/plain HTTP/);

    await pushLayer(cluster, 'tls/capture', 4 * MB);
    for (const [a, name] of [
      [overTls, 'tls'],
      [overPlain, 'plain'],
    ] as const) {
      const res = await skopeoPull(`127.0.0.1:${a.port}/tls/capture:v1`, join(dir, `out-${name}`), { creds: CREDS });
      expect(res.ok, res.stderr).toBe(true);
    }
    expect(tlsPort.captured.length).toBeGreaterThan(0);
    for (const first of tlsPort.captured) {
      // A TLS handshake record (0x16, version 3.x): a ClientHello.
      expect([first[0], first[1]]).toEqual([0x16, 0x03]);
      const text = first.toString('latin1');
      expect(text).not.toContain(SWARM);
      expect(text).not.toContain(BASIC);
      expect(text).not.toContain(USER.password);
    }
    // The same agent over http:// hands both to whatever listens on the proxy's address.
    const plain = Buffer.concat(plainPort.captured).toString('latin1');
    expect(plain).toContain(`x-p2p-swarm-token: ${SWARM}`);
    expect(plain).toContain(`authorization: Basic ${BASIC}`);
  });

  it('refuses a half TLS config or an unreadable file at start, naming the key', async () => {
    const dir = await tempDir('p2p-tls-config-');
    const certs = await makeCerts(dir);
    const halfFile = await writeConfig(dir, { dataDir: join(dir, 'p'), tlsCertFile: certs.cert }, 'half.yaml');
    const half = await runCli(['proxy', '--config', halfFile]);
    expect(half.code).toBe(1);
    expect(half.stderr).toMatch(/tlsKeyFile must be set with tlsCertFile/);
    const missingFile = await writeConfig(
      dir,
      { dataDir: join(dir, 'p'), tlsCertFile: join(dir, 'nope.crt'), tlsKeyFile: certs.key },
      'missing.yaml',
    );
    const missing = await runCli(['proxy', '--config', missingFile]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/tlsCertFile: cannot read .*nope\.crt.* \(ENOENT\)/);
    const caFile = await writeConfig(dir, { dataDir: join(dir, 'a'), proxyCaFile: join(dir, 'nope-ca.crt') }, 'agent.yaml');
    const ca = await runCli(['agent', '--config', caFile]);
    expect(ca.code).toBe(1);
    expect(ca.stderr).toMatch(/proxyCaFile: cannot read .*nope-ca\.crt.* \(ENOENT\)/);
  });
});
