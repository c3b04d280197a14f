import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ROOT } from '../support/app-process.js';
import { OciLayout, pushImage, skopeoPull } from '../support/oci-image.js';
import { freePort, waitFor } from '../support/origin-registry.js';
import { CREDS, startLoopbackCluster, type LoopbackCluster } from '../p2p/cluster.js';

const run = promisify(execFile);
const RULES = join(ROOT, 'k8s/monitoring/p2p-alerts.rules.yaml');
const DASHBOARD = join(ROOT, 'k8s/monitoring/p2p-dashboard.json');
const MB = 1_000_000;

interface Panel {
  title: string;
  targets: { expr: string }[];
}
interface PromAnswer<T> {
  status: string;
  error?: string;
  data: T;
}
type Vector = { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };

/**
 * The shipped dashboard and alert rules against a real Prometheus (Debian's `prometheus`) scraping
 * a real tracker, proxy and two agents while an image is pulled through both agents.
 */
describe('monitoring: a real Prometheus evaluates the shipped dashboard and alert rules', () => {
  let cluster: LoopbackCluster;
  let prom: ChildProcess;
  let promUrl: string;
  let panels: Panel[];

  const query = async (expr: string): Promise<PromAnswer<Vector>> => {
    const res = await request(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return (await res.body.json()) as PromAnswer<Vector>;
  };
  // Grafana's variables as the dashboard uses them: every node, and a window wide enough for the
  // 1 s scrapes of this test (Grafana picks ≥ 4 scrape intervals).
  const grafana = (expr: string) => expr.replaceAll('$__rate_interval', '1m').replaceAll('$node', '.*');

  beforeAll(async () => {
    panels = (JSON.parse(await readFile(DASHBOARD, 'utf8')) as { panels: Panel[] }).panels;
    cluster = await startLoopbackCluster({ proxies: 1, agents: 2 });
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    const hostPort = (url: string) => new URL(url).host;
    const job = (name: string, urls: string[]) => ({ job_name: name, static_configs: [{ targets: urls.map(hostPort) }] });
    const config = {
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: [RULES],
      scrape_configs: [
        job(
          'p2p-agent',
          cluster.agents.map((a) => a.url),
        ),
        job(
          'p2p-proxy',
          cluster.proxies.map((p) => p.url),
        ),
        job('p2p-tracker', [cluster.tracker.url]),
      ],
    };
    const configFile = join(cluster.dir, 'prometheus.yml');
    await writeFile(configFile, JSON.stringify(config));
    prom = spawn(
      'prometheus',
      [`--config.file=${configFile}`, `--storage.tsdb.path=${join(cluster.dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let promLog = '';
    prom.stderr?.on('data', (d: Buffer) => (promLog = (promLog + d.toString()).slice(-4000)));
    await waitFor(
      async () => {
        if (prom.exitCode !== null) throw new Error(`prometheus exited ${prom.exitCode}: ${promLog}`);
        return (
          (await request(`${promUrl}/-/ready`).then(
            (r) => (r.body.dump(), r.statusCode),
            () => 0,
          )) === 200
        );
      },
      30_000,
      'prometheus ready',
    );
    // Every target scraped once before the pull, so rate() has a sample on each side of it.
    await waitFor(async () => (await query('count(up == 1)')).data.result[0]?.value[1] === '4', 30_000, 'four targets up');

    const layout = new OciLayout(join(cluster.dir, 'layout'));
    await layout.addImage('v1', [8 * MB, 2_000]);
    await pushImage(layout.dir, 'v1', { host: cluster.origin.host, repo: 'team/app', creds: CREDS });
    for (const [i, a] of cluster.agents.entries()) {
      const pulled = await skopeoPull(`127.0.0.1:${a.port}/team/app:v1`, join(cluster.dir, `out${i}`), { creds: CREDS });
      expect(pulled.ok, pulled.stderr).toBe(true);
    }
    // Both pulls are in Prometheus once each agent's served bytes show in a rate.
    await waitFor(
      async () => (await query('sum by (instance) (rate(p2p_blob_bytes_served_total{app="agent"}[1m])) > 0')).data.result.length === 2,
      30_000,
      'both pulls scraped',
    );
  }, 180_000);

  afterAll(async () => {
    if (prom && prom.exitCode === null) {
      const exited = new Promise((r) => prom.once('exit', r));
      prom.kill('SIGTERM');
      await exited;
    }
    await cluster?.stop();
  });

  it('promtool accepts the alert rules', async () => {
    const { stdout } = await run('promtool', ['check', 'rules', RULES]);
    expect(stdout).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('every dashboard query evaluates without error', async () => {
    const targets = panels.flatMap((p) => p.targets.map((t) => ({ title: p.title, expr: grafana(t.expr) })));
    expect(targets.length).toBeGreaterThanOrEqual(14);
    for (const t of targets) {
      const answer = await query(t.expr);
      expect(answer.status, `${t.title}: ${t.expr}: ${answer.error}`).toBe('success');
    }
  });

  it('the main panels return data from the pull', async () => {
    const values = async (title: string) => {
      const panel = panels.find((p) => p.title === title);
      expect(panel, title).toBeDefined();
      const answers = await Promise.all(panel!.targets.map((t) => query(grafana(t.expr))));
      return answers.flatMap((a) => a.data.result.map((r) => ({ labels: r.metric, value: Number(r.value[1]) })));
    };
    const positive = async (title: string) => {
      const v = await values(title);
      expect(v.length, `${title}: no series`).toBeGreaterThan(0);
      expect(Math.max(...v.map((s) => s.value)), `${title}: ${JSON.stringify(v)}`).toBeGreaterThan(0);
      return v;
    };
    // One series per agent: both pulled.
    expect((await positive('Pull speed per node')).filter((s) => s.value > 0)).toHaveLength(2);
    const sources = (await positive('Bytes received by source (agents)')).map((s) => s.labels.source);
    // The big layer came over BitTorrent (proxy and/or the other agent), the tiny one from the origin.
    expect(sources).toContain('origin');
    expect(sources.some((s) => s === 'proxy' || s === 'peer')).toBe(true);
    for (const s of sources) expect(['origin', 'proxy', 'peer', 'relay']).toContain(s);
    await positive('Proxy origin traffic');
    const limits = await values('Current limits');
    expect(limits.map((s) => `${s.labels.app}/${s.labels.limit}`).sort()).toEqual([
      'agent/downloadRate',
      'agent/uploadRate',
      'proxy/originRate',
      'proxy/uploadRate',
    ]);
    // Series present (their values depend on the moment: a hit ratio of 0 is a right answer here).
    for (const title of [
      'Cache hit ratio (bytes served from the cache)',
      'Disk write and read rate per node',
      'Swarm peers per node',
      'Not ready (per app and instance)',
      'Data dir free space / floor',
      'CPU',
      'Memory (RSS)',
    ]) {
      expect((await values(title)).length, title).toBeGreaterThan(0);
    }
    // The node variable lists both agents.
    const nodes = (await (
      await request(`${promUrl}/api/v1/series?match[]=${encodeURIComponent('p2p_ready{app="agent"}')}`)
    ).body.json()) as PromAnswer<{ instance: string }[]>;
    expect(new Set(nodes.data.map((s) => s.instance)).size).toBe(2);
  });

  it('every alert rule evaluates without error and none fires on a healthy cluster', async () => {
    const groups = parse(await readFile(RULES, 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] };
    const names = groups.groups.flatMap((g) => g.rules.map((r) => r.alert));
    expect(names).toEqual(expect.arrayContaining(['P2PAgentNotReady', 'P2POriginFallbacksRising', 'P2PCacheFloorReached', 'P2PProxyDown']));
    type Rules = PromAnswer<{
      groups: { rules: { name: string; health: string; lastError?: string; state: string; lastEvaluation: string }[] }[];
    }>;
    let rules: Rules['data']['groups'][number]['rules'] = [];
    await waitFor(
      async () => {
        const answer = (await (await request(`${promUrl}/api/v1/rules`)).body.json()) as Rules;
        rules = answer.data.groups.flatMap((g) => g.rules);
        return rules.length === names.length && rules.every((r) => !r.lastEvaluation.startsWith('0001'));
      },
      30_000,
      'every rule evaluated',
    );
    for (const r of rules) {
      expect(r.health, `${r.name}: ${r.lastError}`).toBe('ok');
      expect(r.state, r.name).toBe('inactive');
    }
  });

  it('the agent-not-ready alert expression fires when an agent stops answering', async () => {
    const [, second] = cluster.agents;
    const rules = parse(await readFile(RULES, 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] };
    const expr = rules.groups[0].rules.find((r) => r.alert === 'P2PAgentNotReady')!.expr;
    await second.stop();
    await waitFor(
      async () => (await query(expr)).data.result.some((r) => r.metric.instance === new URL(second.url).host),
      30_000,
      'P2PAgentNotReady expression true for the stopped agent',
    );
  });
});
