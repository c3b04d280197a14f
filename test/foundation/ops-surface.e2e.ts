import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, tempDir, type AppProcess } from '../support/app-process.js';

const TOKEN = 'admin-token-for-tests';

interface AppCase {
  app: 'agent' | 'proxy' | 'tracker';
  limit: string;
  otherLimit: string;
  hasDataDir: boolean;
}

const CASES: AppCase[] = [
  { app: 'agent', limit: 'downloadRate', otherLimit: 'originRate', hasDataDir: true },
  { app: 'proxy', limit: 'originRate', otherLimit: 'downloadRate', hasDataDir: true },
  { app: 'tracker', limit: 'announceRate', otherLimit: 'uploadRate', hasDataDir: false },
];

async function call(url: string, init: { method?: 'GET' | 'PATCH'; token?: string; body?: string } = {}) {
  const headers: Record<string, string> = {};
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  const res = await request(url, { method: init.method ?? 'GET', headers, body: init.body });
  const text = await res.body.text();
  return { status: res.statusCode, text, json: () => JSON.parse(text) as Record<string, unknown>, headers: res.headers };
}

describe.each(CASES)('$app ops surface (real process)', ({ app, limit, otherLimit, hasDataDir }) => {
  let proc: AppProcess;
  let dir: string;

  beforeAll(async () => {
    dir = await tempDir();
    await writeFile(join(dir, 'admin-token'), `${TOKEN}\n`);
    proc = await startApp(app, {
      adminTokenFile: join(dir, 'admin-token'),
      ...(hasDataDir ? { dataDir: join(dir, 'data'), minFreeSpace: '1MB', p2pPort: 0 } : {}),
    });
  });
  afterAll(async () => {
    await proc?.stop();
  });

  it('serves liveness, readiness with JSON details and Prometheus metrics', async () => {
    expect((await call(`${proc.url}/healthz`)).status).toBe(200);
    const ready = await call(`${proc.url}/readyz`);
    expect(ready.status).toBe(200);
    const details = ready.json().details as Record<string, { status: string }>;
    expect(Object.keys(details).length).toBeGreaterThan(0);
    for (const check of Object.values(details)) expect(check.status).toBe('up');
    const metrics = await call(`${proc.url}/metrics`);
    expect(metrics.status).toBe(200);
    // Standard process/Node.js names (existing dashboards work), the app's own under p2p_.
    expect(metrics.text).toMatch(/^process_cpu_seconds_total\{app="[a-z]+"\} /m);
    expect(metrics.text).toMatch(/^nodejs_heap_size_used_bytes\{app="[a-z]+"\} /m);
    expect(metrics.text).not.toMatch(/^p2p_process_/m);
    expect(metrics.text).toContain(`app="${app}"`);
    // Readiness per check and the live limits, as gauges.
    for (const check of Object.keys(details)) expect(metrics.text).toContain(`p2p_ready{check="${check}",app="${app}"} 1`);
    expect(metrics.text).toMatch(new RegExp(`^p2p_rate_limit\\{limit="${limit}",app="${app}"\\} \\d+`, 'm'));
    expect(metrics.text).toMatch(/^p2p_disk_written_bytes_total\{app="[a-z]+"\} \d+/m);
    if (hasDataDir) {
      expect(Number(/^p2p_data_dir_free_bytes\{[^}]*\} (\d+)/m.exec(metrics.text)?.[1])).toBeGreaterThan(1e6);
      expect(metrics.text).toMatch(/^p2p_data_dir_min_free_bytes\{app="[a-z]+"\} 1000000$/m);
    }
  });

  it('refuses the admin API without or with a wrong token', async () => {
    const body = JSON.stringify({ [limit]: '20MB' });
    expect((await call(`${proc.url}/admin/rate`, { method: 'PATCH', body })).status).toBe(401);
    expect((await call(`${proc.url}/admin/rate`, { method: 'PATCH', body, token: 'nope' })).status).toBe(401);
    expect((await call(`${proc.url}/admin/rate`)).status).toBe(401);
  });

  it('changes a limit live and reports it in units per second', async () => {
    const patched = await call(`${proc.url}/admin/rate`, { method: 'PATCH', token: TOKEN, body: JSON.stringify({ [limit]: '20MB' }) });
    expect(patched.status).toBe(200);
    expect(patched.json()[limit]).toBe(20_000_000);
    const current = await call(`${proc.url}/admin/rate`, { token: TOKEN });
    expect(current.json()[limit]).toBe(20_000_000);
    await call(`${proc.url}/admin/rate`, { method: 'PATCH', token: TOKEN, body: JSON.stringify({ [limit]: '2MiB/s' }) });
    expect((await call(`${proc.url}/admin/rate`, { token: TOKEN })).json()[limit]).toBe(2 * 2 ** 20);
    await call(`${proc.url}/admin/rate`, { method: 'PATCH', token: TOKEN, body: JSON.stringify({ [limit]: 0 }) });
    expect((await call(`${proc.url}/admin/rate`, { token: TOKEN })).json()[limit]).toBe(0);
  });

  it.each([
    ['a negative rate', (l: string) => ({ [l]: -5 }), (l: string) => l],
    ['a non-numeric rate', (l: string) => ({ [l]: 'fast' }), (l: string) => l],
    ['an unknown key', () => ({ bogus: 1 }), () => 'bogus'],
    ['a null rate', (l: string) => ({ [l]: null }), (l: string) => l],
  ])('answers 400 naming the field for %s', async (_name, makeBody, field) => {
    const before = (await call(`${proc.url}/admin/rate`, { token: TOKEN })).json();
    const res = await call(`${proc.url}/admin/rate`, { method: 'PATCH', token: TOKEN, body: JSON.stringify(makeBody(limit)) });
    expect(res.status).toBe(400);
    expect(res.text).toContain(field(limit));
    // A refused change changes nothing.
    expect((await call(`${proc.url}/admin/rate`, { token: TOKEN })).json()).toEqual(before);
  });

  it("refuses another app's limit name", async () => {
    const res = await call(`${proc.url}/admin/rate`, { method: 'PATCH', token: TOKEN, body: JSON.stringify({ [otherLimit]: 1 }) });
    expect(res.status).toBe(400);
    expect(res.text).toContain(otherLimit);
  });

  it('answers 400 for a body that is not a JSON object', async () => {
    for (const body of ['[1]', 'null', '"x"', '{not json']) {
      const res = await call(`${proc.url}/admin/rate`, { method: 'PATCH', token: TOKEN, body });
      expect(res.status, body).toBe(400);
    }
  });

  it('logs the change without the token', () => {
    expect(proc.output()).toMatch(new RegExp(`${limit} changed from`));
    expect(proc.output()).not.toContain(TOKEN);
  });

  it('exits 0 on SIGTERM', async () => {
    expect(await proc.stop('SIGTERM')).toBe(0);
  });
});

describe('admin API without a configured token', () => {
  it('answers 403 "admin API disabled" even with a bearer token', async () => {
    const dir = await tempDir();
    const proc = await startApp('tracker', { adminTokenFile: join(dir, 'missing-file') });
    try {
      const res = await call(`${proc.url}/admin/rate`, { method: 'PATCH', token: 'anything', body: '{"announceRate":1}' });
      expect(res.status).toBe(403);
      expect(res.text).toContain('admin API disabled');
      expect((await call(`${proc.url}/healthz`)).status).toBe(200);
    } finally {
      await proc.stop();
    }
  });

  it('takes the token from P2P_ADMIN_TOKEN', async () => {
    const proc = await startApp('tracker', {}, { env: { P2P_ADMIN_TOKEN: 'from-env' } });
    try {
      expect((await call(`${proc.url}/admin/rate`, { token: 'from-env' })).status).toBe(200);
      expect((await call(`${proc.url}/admin/rate`, { token: 'other' })).status).toBe(401);
    } finally {
      await proc.stop();
    }
  });
});

describe('readiness of an unusable data dir', () => {
  it('answers 503 with the reason while liveness stays 200', async () => {
    const dir = await tempDir();
    // A path below a regular file can never be created, even by root (chmod would not stop root).
    await writeFile(join(dir, 'a-file'), '');
    const proc = await startApp('agent', { dataDir: join(dir, 'a-file', 'data'), p2pPort: 0 });
    try {
      const ready = await call(`${proc.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(ready.text).toContain('data dir not writable');
      expect((await call(`${proc.url}/healthz`)).status).toBe(200);
    } finally {
      await proc.stop();
    }
  });

  it('answers 503 when free space is below minFreeSpace', async () => {
    const dir = await tempDir();
    const proc = await startApp('proxy', { dataDir: join(dir, 'data'), minFreeSpace: '1000TB', p2pPort: 0 });
    try {
      const ready = await call(`${proc.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(ready.text).toContain('below minFreeSpace');
    } finally {
      await proc.stop();
    }
  });
});
