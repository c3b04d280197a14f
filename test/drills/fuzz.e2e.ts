import fc from 'fast-check';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppProcess } from '../support/app-process.js';
import { ADMIN, AUTH, DrillCluster, get, MB, pullBlob, rssBytes } from './drill-cluster.js';

const REQUESTS = 10_000;
const CONCURRENCY = 16;

interface FuzzRequest {
  method: 'GET' | 'HEAD' | 'PUT' | 'PATCH' | 'DELETE' | 'POST' | 'OPTIONS';
  path: string;
  headers: Record<string, string>;
  body?: string;
}

// Characters a URL path may carry on the wire (undici refuses raw control bytes), including the
// ones that matter for traversal and parsing: / . % : @ + ; = and percent-escapes.
const pathChar = fc.constantFrom(..."abcxyzAZ019-_.~/%:@+;=!$&'()*,".split(''), '%2F', '%2e', '%00', '%ff', '..', '//');
const segment = fc.string({ unit: pathChar, maxLength: 40 });
const hex = fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEFxz'.split('')), minLength: 0, maxLength: 70 });
const digest = fc.oneof(
  hex.map((h) => `sha256:${h}`),
  fc.tuple(fc.constantFrom('sha512', 'md5', 'SHA256', 'sha256+b64', ''), hex).map(([a, h]) => `${a}:${h}`),
  segment,
);
const name = fc.oneof(
  fc.constant('drill/app'),
  fc.array(segment, { minLength: 0, maxLength: 6 }).map((s) => s.join('/')),
  fc.string({ unit: pathChar, maxLength: 300 }),
);
const query = fc.oneof(
  fc.constant(''),
  segment.map((s) => `?ns=${s}`),
  fc.tuple(segment, segment).map(([a, b]) => `?n=${a}&last=${b}`),
  segment.map((s) => `?${s}`),
);
const mirrorPath = fc.oneof(
  fc
    .tuple(name, fc.constantFrom('blobs', 'manifests', 'tags', 'blobs/uploads', 'referrers', ''), fc.oneof(digest, segment), query)
    .map(([n, kind, ref, q]) => `/v2/${n}/${kind}/${ref}${q}`),
  fc.tuple(segment, query).map(([s, q]) => `/v2/${s}${q}`),
);
const adminPath = fc.oneof(
  fc.constantFrom('/admin/rate', '/admin/torrents', '/admin/', '/admin/rate/'),
  segment.map((s) => `/admin/${s}`),
);
const headerValue = fc.string({ unit: fc.constantFrom(...'abcXYZ019 =-_:;,./+*"\'!'.split('')), maxLength: 80 });
const authorization = fc.oneof(
  fc.constant(AUTH),
  fc.constant(`Bearer ${ADMIN}`),
  headerValue.map((v) => `Basic ${Buffer.from(v).toString('base64')}`),
  headerValue.map((v) => `Bearer ${v}`),
  headerValue,
);
const range = fc.oneof(
  fc.tuple(fc.integer({ min: -5, max: 5_000_000 }), fc.integer({ min: -5, max: 5_000_000 })).map(([a, b]) => `bytes=${a}-${b}`),
  headerValue.map((v) => `bytes=${v}`),
  headerValue,
);
const rateBody = fc.oneof(
  fc
    .record(
      {
        downloadRate: fc.oneof(fc.string(), fc.integer(), fc.double(), fc.constant(null)),
        uploadRate: fc.oneof(fc.string(), fc.integer(), fc.boolean()),
      },
      { requiredKeys: [] },
    )
    .map((o) => JSON.stringify(o)),
  fc.json(),
  fc.string(),
);
const fuzzRequest: fc.Arbitrary<FuzzRequest> = fc
  .record({
    method: fc.constantFrom<FuzzRequest['method']>('GET', 'GET', 'GET', 'HEAD', 'PUT', 'PATCH', 'DELETE', 'POST', 'OPTIONS'),
    path: fc.oneof({ weight: 3, arbitrary: mirrorPath }, { weight: 1, arbitrary: adminPath }),
    auth: fc.option(authorization),
    range: fc.option(range),
    contentType: fc.option(
      fc.constantFrom(
        'application/json',
        'text/plain',
        'application/octet-stream',
        'application/vnd.oci.image.manifest.v1+json',
        'multipart/form-data',
      ),
    ),
    body: rateBody,
  })
  .map((r) => {
    const headers: Record<string, string> = {};
    if (r.auth !== null) headers.authorization = r.auth;
    if (r.range !== null) headers.range = r.range;
    if (r.contentType !== null) headers['content-type'] = r.contentType;
    const withBody = r.method === 'PUT' || r.method === 'PATCH' || r.method === 'POST';
    return { method: r.method, path: r.path, headers, body: withBody ? r.body : undefined };
  });

describe('drill 10: fuzz — 10,000 generated malformed requests against the mirror and the admin API', () => {
  let c: DrillCluster;
  let agent: AppProcess;

  beforeAll(async () => {
    c = await DrillCluster.start({ proxies: 0, agents: 1, tracker: false, layers: [2 * MB, 2_000] });
    agent = c.agents[0];
    for (const l of c.image.layers) expect((await pullBlob(agent, l.digest)).digest).toBe(l.digest);
  }, 120_000);

  afterAll(async () => {
    await c?.stop();
  });

  it('no 5xx, no crash, RSS flat', async () => {
    const pool = new Pool(agent.url, { connections: CONCURRENCY });
    const samples = fc.sample(fuzzRequest, { numRuns: REQUESTS, seed: Number(process.env.FUZZ_SEED ?? 20261127) });
    const statuses = new Map<number, number>();
    const fiveXx: string[] = [];
    const dropped: string[] = [];
    let sent = 0;
    let clientErrors = 0;
    let rssWarm = 0;
    const started = Date.now();
    const worker = async () => {
      for (;;) {
        const i = sent++;
        if (i >= samples.length) return;
        if (i === 1_000) rssWarm = await rssBytes(agent.proc.pid!).catch(() => 0);
        const r = samples[i];
        try {
          const res = await pool.request({
            method: r.method,
            path: r.path,
            headers: r.headers,
            body: r.body,
            headersTimeout: 10_000,
            bodyTimeout: 10_000,
          });
          await res.body.dump({ limit: 64 * 1024 });
          statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
          if (res.statusCode >= 500) fiveXx.push(`${res.statusCode} ${r.method} ${r.path} ${JSON.stringify(r.headers)}`);
        } catch (err) {
          // undici refusing to send a request (invalid header/path) is the client's doing, not the server's.
          if ((err as { code?: string }).code?.startsWith('UND_ERR_INVALID')) clientErrors++;
          else
            dropped.push(
              `${r.method} ${r.path} ${JSON.stringify(r.headers)} body=${JSON.stringify(r.body?.slice(0, 80))}: ${(err as Error).message}`,
            );
        }
      }
    };
    const rssStart = await rssBytes(agent.proc.pid!);
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    await pool.close();
    if (agent.proc.exitCode !== null || agent.proc.signalCode !== null)
      console.log(
        `agent exited ${agent.proc.exitCode} ${agent.proc.signalCode}:\n${agent.output().slice(-4000)}\n${dropped.slice(0, 5).join('\n')}`,
      );
    expect([agent.proc.exitCode, agent.proc.signalCode]).toEqual([null, null]);
    const rssEnd = await rssBytes(agent.proc.pid!);
    const ms = Date.now() - started;
    const summary = [...statuses.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([s, n]) => `${s}:${n}`)
      .join(' ');
    console.log(
      `drill 10: ${REQUESTS} requests (${clientErrors} refused by the client) in ${ms} ms; statuses ${summary}; RSS ${(rssStart / MB).toFixed(0)} → ${(rssWarm / MB).toFixed(0)} (after 1k) → ${(rssEnd / MB).toFixed(0)} MB`,
    );
    if (dropped.length)
      console.log(
        `alive=${agent.proc.exitCode === null}\n${dropped.slice(0, 10).join('\n')}\n${agent
          .output()
          .split('\n')
          .filter((l) => /error|warn/i.test(l))
          .slice(-15)
          .join('\n')}`,
      );
    expect(fiveXx.slice(0, 10)).toEqual([]);
    expect(dropped.slice(0, 10)).toEqual([]);
    expect(agent.proc.exitCode).toBeNull();
    expect((await get(`${agent.url}/healthz`)).status).toBe(200);
    expect(rssEnd - rssWarm).toBeLessThan(60 * MB);
    // Still serving real pulls, byte-exact.
    for (const l of c.image.layers) expect((await pullBlob(agent, l.digest)).digest).toBe(l.digest);
  }, 120_000);
});
