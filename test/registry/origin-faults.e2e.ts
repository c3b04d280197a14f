import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findLogs, startApp, tempDir, type AppProcess } from '../support/app-process.js';
import { OciLayout, pushImage, type BuiltImage } from '../support/oci-image.js';
import { startOriginRegistry, waitFor, type OriginRegistry } from '../support/origin-registry.js';
import { basic } from './helpers.js';
import { ociErrorCode } from '../support/oci-error-body.js';

const exec = promisify(execFile);
const CREDS = 'alice:s3cret';
const AUTH = basic('alice', 's3cret');
const MB = 2 ** 20;

/** `curl -sS -v` with the agent's credentials; resolves with the status curl saw and its verbose log. */
async function curl(args: string[]): Promise<{ status: number; headers: string; body: string }> {
  const { stdout, stderr } = await exec(
    'curl',
    ['-sS', '-v', '-u', CREDS, '-o', '-', '-w', '\n%{http_code}', '--max-time', '60', ...args],
    { maxBuffer: 64 * MB },
  );
  const nl = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(nl + 1)), body: stdout.slice(0, nl), headers: stderr };
}

function location(verbose: string): string {
  const m = /^< location: (\S+)/im.exec(verbose);
  if (!m) throw new Error(`no Location in:\n${verbose}`);
  return m[1];
}

/** Issue #12 items 4 and 5: what curl sends on its own (Expect: 100-continue), and an origin that stops answering. */
describe('agent pass-through with curl pushes and a stopped origin (docker-registry origin)', () => {
  let dir: string;
  let origin: OriginRegistry;
  let agent: AppProcess;
  let image: BuiltImage;
  let stopped = false;

  beforeAll(async () => {
    dir = await tempDir('p2p-origin-faults-');
    origin = await startOriginRegistry({ auth: { username: 'alice', password: 's3cret' } });
    const layout = new OciLayout(join(dir, 'layout'));
    image = await layout.addImage('v1', [64 * MB, 2048]);
    await pushImage(layout.dir, 'v1', { host: origin.host, repo: 'faults/app', creds: CREDS });
    // No room in the cache (minFreeSpace far above the disk): every blob is served uncached, the
    // "disk full" path of the issue. Short origin timeouts keep the test quick; decisions stay cached.
    agent = await startApp(
      'agent',
      {
        registry: origin.url,
        dataDir: join(dir, 'data'),
        minFreeSpace: '1000TB',
        originHeadersTimeout: 2,
        originBodyTimeout: 2,
        authCacheTtl: 600,
      },
      { dir },
    );
  });

  afterAll(async () => {
    if (stopped) process.kill(origin.pid, 'SIGCONT');
    await agent?.stop();
    await origin?.stop();
  });

  it('curl pushes a 3 MB blob through the agent, monolithic and chunked, with its own Expect: 100-continue (item 4)', async () => {
    for (const mode of ['monolithic', 'chunked'] as const) {
      const blob = randomBytes(3 * MB);
      const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
      const file = join(dir, `${mode}.bin`);
      await writeFile(file, blob);
      const start = await curl(['-X', 'POST', `${agent.url}/v2/faults/pushed/blobs/uploads/`]);
      expect(start.status, start.body).toBe(202);
      const loc = new URL(location(start.headers), agent.url);
      expect(loc.origin).toBe(agent.url);
      let put;
      if (mode === 'monolithic') {
        loc.searchParams.set('digest', digest);
        put = await curl(['-X', 'PUT', '-H', 'content-type: application/octet-stream', '--data-binary', `@${file}`, loc.href]);
      } else {
        const patch = await curl(['-X', 'PATCH', '-H', 'content-type: application/octet-stream', '--data-binary', `@${file}`, loc.href]);
        expect(patch.status, patch.body).toBe(202);
        // curl adds the header by itself for a body over 1 MB: the case that failed.
        expect(patch.headers).toMatch(/^> Expect: 100-continue/im);
        const next = new URL(location(patch.headers), agent.url);
        next.searchParams.set('digest', digest);
        put = await curl(['-X', 'PUT', next.href]);
      }
      if (mode === 'monolithic') expect(put.headers).toMatch(/^> Expect: 100-continue/im);
      expect(put.status, `${mode}: ${put.body}`).toBe(201);
      const atOrigin = await request(`${origin.url}/v2/faults/pushed/blobs/${digest}`, {
        method: 'HEAD',
        headers: { authorization: AUTH },
      });
      expect([atOrigin.statusCode, atOrigin.headers['content-length']]).toEqual([200, String(blob.length)]);
    }
    // Reads with the header are no 503 either.
    const head = await curl([
      '-I',
      '-H',
      'Expect: 100-continue',
      `${agent.url}/v2/faults/app/manifests/v1`,
      '-H',
      'accept: application/vnd.oci.image.manifest.v1+json',
    ]);
    expect(head.status).toBe(200);
    const tags = await curl(['-H', 'Expect: 100-continue', `${agent.url}/v2/faults/app/tags/list`]);
    expect([tags.status, tags.body]).toEqual([200, JSON.stringify({ name: 'faults/app', tags: ['v1'] }) + '\n']);
  });

  it('origin stopped (SIGSTOP: takes connections, never answers): blob and manifest get a 503 UNAVAILABLE in bounded time, and a log line (item 5)', async () => {
    const layer = image.layers[0];
    // Warm the access decision so the blob request goes straight to the uncached read.
    const warm = await request(`${agent.url}/v2/faults/app/blobs/${layer.digest}`, { headers: { authorization: AUTH } });
    const hash = createHash('sha256');
    for await (const c of warm.body) hash.update(c as Buffer);
    expect([warm.statusCode, `sha256:${hash.digest('hex')}`]).toEqual([200, layer.digest]);
    expect(agent.output()).toContain('serving it from origin uncached');

    process.kill(origin.pid, 'SIGSTOP');
    stopped = true;
    try {
      const bounded = { headersTimeout: 30_000, bodyTimeout: 30_000 };
      for (const path of [`/v2/faults/app/blobs/${layer.digest}`, '/v2/faults/app/manifests/v1']) {
        const t = Date.now();
        const res = await request(`${agent.url}${path}`, { headers: { authorization: AUTH }, ...bounded });
        const body = await res.body.text();
        const seconds = (Date.now() - t) / 1000;
        console.log(`stopped origin: ${path.slice(0, 40)}… → ${res.statusCode} in ${seconds.toFixed(1)} s: ${body}`);
        expect(res.statusCode, body).toBe(503);
        expect(ociErrorCode(body)).toBe('UNAVAILABLE');
        expect(seconds).toBeLessThan(20);
      }
      expect(
        findLogs(agent.logs(), {
          msg: 'origin request failed',
          method: 'GET',
          path: /\/blobs\/sha256:/,
          reason: 'UND_ERR_HEADERS_TIMEOUT',
        }),
      ).not.toEqual([]);
    } finally {
      process.kill(origin.pid, 'SIGCONT');
      stopped = false;
    }
  });

  it('origin goes silent mid-body: the client sees a cut download within the body timeout, not a hang (item 5)', async () => {
    const layer = image.layers[0];
    const ac = new AbortController();
    const guard = setTimeout(() => ac.abort(new Error('hung: no end and no error for 60 s')), 60_000);
    try {
      const res = await request(`${agent.url}/v2/faults/app/blobs/${layer.digest}`, {
        headers: { authorization: AUTH },
        signal: ac.signal,
      });
      expect(res.statusCode).toBe(200);
      const it = res.body[Symbol.asyncIterator]();
      let received = ((await it.next()).value as Buffer).length;
      // Not reading now: backpressure stops the origin mid-blob. Freeze it there.
      process.kill(origin.pid, 'SIGSTOP');
      stopped = true;
      const t = Date.now();
      let error: Error | undefined;
      try {
        for (;;) {
          const next = await it.next();
          if (next.done) break;
          received += (next.value as Buffer).length;
        }
      } catch (err) {
        error = err as Error;
      }
      const seconds = (Date.now() - t) / 1000;
      console.log(`silent origin mid-body: ${received} of ${layer.size} B, then ${error?.message} after ${seconds.toFixed(1)} s`);
      expect(error).toBeDefined();
      expect(ac.signal.aborted).toBe(false);
      expect(received).toBeLessThan(layer.size);
      expect(seconds).toBeLessThan(20);
      await waitFor(
        () => findLogs(agent.logs(), { msg: 'origin failed mid-body', reason: 'UND_ERR_BODY_TIMEOUT' }).length > 0,
        5_000,
        'the mid-body log line',
      );
    } finally {
      clearTimeout(guard);
      process.kill(origin.pid, 'SIGCONT');
      stopped = false;
    }
    // The agent is fine afterwards: the same blob passes through whole again.
    const again = await request(`${agent.url}/v2/faults/app/blobs/${layer.digest}`, { headers: { authorization: AUTH } });
    const hash = createHash('sha256');
    for await (const c of again.body) hash.update(c as Buffer);
    expect(`sha256:${hash.digest('hex')}`).toBe(layer.digest);
  });

  it('origin killed: a clear 503 at once', async () => {
    await origin.stop();
    const t = Date.now();
    const res = await request(`${agent.url}/v2/faults/app/blobs/${image.layers[0].digest}`, { headers: { authorization: AUTH } });
    const body = await res.body.text();
    expect(res.statusCode, body).toBe(503);
    expect(ociErrorCode(body)).toBe('UNAVAILABLE');
    expect(Date.now() - t).toBeLessThan(10_000);
  });
});
