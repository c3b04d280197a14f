import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import bencode from 'bencode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, tempDir, type AppProcess } from '../support/app-process.js';

const SWARM_TOKEN = 'swarm-token-for-binding-tests';
const enc = (b: Buffer) => [...b].map((x) => `%${x.toString(16).padStart(2, '0')}`).join('');

interface Announce {
  infoHash: string;
  peerId: Buffer;
  port: number;
  event?: 'started' | 'stopped' | 'update';
  left?: number;
}

/**
 * One announce over HTTP from `localAddress` (a loopback address other than 127.0.0.1: Linux
 * routes all of 127/8 to lo, so the tracker sees a distinct source IP per sender). Non-compact,
 * so the answer lists peer ids too.
 */
function announceFrom(base: string, localAddress: string, a: Announce): Promise<Record<string, unknown>> {
  const url =
    `${base}/announce?info_hash=${enc(Buffer.from(a.infoHash, 'hex'))}&peer_id=${enc(a.peerId)}&port=${a.port}` +
    `&uploaded=0&downloaded=0&left=${a.left ?? 1}&compact=0&event=${a.event ?? 'started'}&token=${SWARM_TOKEN}`;
  return new Promise((resolve, reject) => {
    const req = request(url, { localAddress }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const out = bencode.decode(Buffer.concat(chunks)) as Record<string, unknown>;
        if (out['failure reason']) reject(new Error(`tracker refused: ${Buffer.from(out['failure reason'] as Uint8Array).toString()}`));
        else resolve(out);
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** `ip:port peer-id-hex` of every peer in a non-compact answer, sorted. */
function listed(answer: Record<string, unknown>): string[] {
  return (answer['peers'] as { ip: Uint8Array; port: number; 'peer id': Uint8Array }[])
    .map((p) => `${Buffer.from(p.ip).toString()}:${p.port} ${Buffer.from(p['peer id']).toString('hex')}`)
    .sort();
}

async function gauge(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`p2p_${name}{`) || l.startsWith(`p2p_${name} `));
  return Number(line?.split(' ').at(-1));
}

// Issue #12 item 10: a token holder reusing another peer's id must not move or delist that peer.
describe('tracker binds a peer entry to the address that announced it (bin/p2p tracker, two loopback source addresses)', () => {
  let tracker: AppProcess;

  beforeAll(async () => {
    const dir = await tempDir('p2p-tracker-binding-');
    await writeFile(join(dir, 'swarm-token'), `${SWARM_TOKEN}\n`);
    tracker = await startApp('tracker', { swarmTokenFile: join(dir, 'swarm-token'), announceRate: 0, announceInterval: '60s' }, { dir });
  });
  afterAll(() => tracker?.stop());

  it('an announce with the victim’s peer id from 127.0.0.3 neither hijacks its listing nor stops it', async () => {
    const infoHash = randomBytes(20).toString('hex');
    const victimId = randomBytes(20);
    const victim = `127.0.0.2:7001 ${victimId.toString('hex')}`;
    // The victim (an agent seeding the blob) announces from 127.0.0.2.
    await announceFrom(tracker.url, '127.0.0.2', { infoHash, peerId: victimId, port: 7001, left: 0 });

    // The attacker has the swarm token and learnt the victim's id (it is in every handshake).
    await announceFrom(tracker.url, '127.0.0.3', { infoHash, peerId: victimId, port: 7001 });
    await announceFrom(tracker.url, '127.0.0.3', { infoHash, peerId: victimId, port: 7666, event: 'update' });
    const observer = { infoHash, peerId: randomBytes(20), port: 7003 };
    const during = listed(await announceFrom(tracker.url, '127.0.0.4', observer));
    // The victim is still listed at its own address; the attacker's announces list only the attacker.
    expect(during).toContain(victim);
    expect(during.filter((p) => p.startsWith('127.0.0.2:'))).toEqual([victim]);

    // `stopped` with the victim's id, for every port involved, from the attacker's address.
    for (const port of [7001, 7666]) await announceFrom(tracker.url, '127.0.0.3', { infoHash, peerId: victimId, port, event: 'stopped' });
    const after = listed(await announceFrom(tracker.url, '127.0.0.4', { ...observer, event: 'update' }));
    expect(after).toEqual([victim]);
    expect(await gauge(tracker.url, 'tracker_peers')).toBe(2); // the victim and the observer

    // The victim's own stop still delists it.
    await announceFrom(tracker.url, '127.0.0.2', { infoHash, peerId: victimId, port: 7001, event: 'stopped' });
    expect(listed(await announceFrom(tracker.url, '127.0.0.4', { ...observer, event: 'update' }))).toEqual([]);
  });
});
