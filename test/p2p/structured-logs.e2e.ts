import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findLogs, parseLogLines, type AppProcess, type LogLine } from '../support/app-process.js';
import { fileDigest, OciLayout, pushImage, skopeoPull, type BuiltImage } from '../support/oci-image.js';
import { CREDS, startLoopbackCluster, SWARM, USER, type LoopbackCluster } from './cluster.js';

const MB = 1_000_000;

/**
 * Issue #14 item 4: with `logFormat: json` every line of every app is one JSON object, and one
 * pull can be followed across agent, proxy and tracker by its layer digest (and, into the
 * tracker, by the infoHash a line carrying both joins it to).
 */
describe('structured logs: one pull followed by digest across agents, proxy and tracker (real processes)', () => {
  let cluster: LoopbackCluster;
  let image: BuiltImage;
  let apps: { name: string; app: AppProcess }[];

  beforeAll(async () => {
    // The tracker at debug: its per-announce lines (infoHash, peer) are debug lines.
    cluster = await startLoopbackCluster({ proxies: 1, agents: 2, trackerConfig: { logLevel: 'debug' } });
    const layout = new OciLayout(join(cluster.dir, 'layout'));
    image = await layout.addImage('v1', [12 * MB, 2_000]);
    await pushImage(layout.dir, 'v1', { host: cluster.origin.host, repo: 'team/logs', creds: CREDS });
    for (const [i, agent] of cluster.agents.entries()) {
      const pulled = await skopeoPull(`127.0.0.1:${agent.port}/team/logs:v1`, join(cluster.dir, `out${i}`), { creds: CREDS });
      expect(pulled.ok, pulled.stderr).toBe(true);
      expect(await fileDigest(join(cluster.dir, `out${i}`, image.layers[0].digest.slice(7)))).toBe(image.layers[0].digest);
    }
    apps = [
      { name: 'tracker', app: cluster.tracker },
      { name: 'proxy', app: cluster.proxies[0] },
      { name: 'agent A', app: cluster.agents[0] },
      { name: 'agent B', app: cluster.agents[1] },
    ];
    // Stopped before reading: every line, shutdown included, is out.
    await cluster.stop();
  }, 240_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('writes only JSON lines on stdout, each with level, time, app, context and msg', () => {
    for (const { name, app } of apps) {
      const lines = app.stdout().split('\n').filter(Boolean);
      expect(lines.length, name).toBeGreaterThan(10);
      for (const line of lines) {
        let parsed: LogLine;
        try {
          parsed = JSON.parse(line) as LogLine;
        } catch {
          throw new Error(`${name}: not a JSON line: ${line}`);
        }
        expect(parsed, `${name}: ${line}`).toMatchObject({
          level: expect.stringMatching(/^(fatal|error|warn|info|debug|trace)$/),
          time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
          app: name.split(' ')[0],
          context: expect.any(String),
          msg: expect.any(String),
        });
      }
    }
  });

  it('follows the layer by digest: agents and proxy lines carry digest, bytes, durationMs and source; infoHash joins the tracker', () => {
    const layer = image.layers[0];
    const logs = Object.fromEntries(apps.map(({ name, app }) => [name, parseLogLines(app.stdout())]));
    const measured = (lines: LogLine[]) =>
      findLogs(lines, { digest: layer.digest }).filter(
        (l) => typeof l.bytes === 'number' && typeof l.durationMs === 'number' && typeof l.source === 'string',
      );

    // Agent A: its fill (relayed from the proxy, then the swarm or the origin) and its response to skopeo.
    for (const agent of ['agent A', 'agent B']) {
      const lines = measured(logs[agent]);
      expect(
        lines.map((l) => l.msg),
        agent,
      ).toEqual(expect.arrayContaining(['fill complete', 'blob response']));
      expect(findLogs(lines, { msg: 'blob response' })[0], agent).toMatchObject({
        repo: 'team/logs',
        status: 200,
        outcome: 'complete',
        bytes: layer.size,
      });
    }
    // The proxy: its one origin fetch of the blob.
    const proxyFill = findLogs(measured(logs.proxy), { msg: 'fill complete' });
    expect(proxyFill).toEqual([expect.objectContaining({ bytes: layer.size, source: 'origin', app: 'proxy' })]);

    // digest → infoHash from any agent or proxy line that has both, then into the tracker.
    const joined = [...logs.proxy, ...logs['agent A'], ...logs['agent B']].filter(
      (l) => l.digest === layer.digest && typeof l.infoHash === 'string',
    );
    const infoHashes = new Set(joined.map((l) => l.infoHash));
    expect(infoHashes.size).toBe(1);
    const [infoHash] = [...infoHashes] as string[];
    expect(findLogs(logs.proxy, { digest: layer.digest, infoHash, msg: /^torrent made/ })).toHaveLength(1);
    // Agent B found the torrent ready: it downloaded from the swarm (the proxy seeds).
    expect(findLogs(logs['agent B'], { digest: layer.digest, infoHash, msg: 'swarm download started' })).toHaveLength(1);
    const announces = findLogs(logs.tracker, { msg: 'announce', infoHash });
    expect(announces.length).toBeGreaterThanOrEqual(2);
    for (const a of announces)
      expect(a).toMatchObject({ level: 'debug', context: 'Tracker', peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
  });

  it('never writes the swarm token or the registry password', () => {
    for (const { name, app } of apps) {
      expect(app.output(), name).not.toContain(SWARM);
      expect(app.output(), name).not.toContain(USER.password);
    }
  });
});
