import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, tempDir, type AppProcess } from '../support/app-process.js';
import { startContainerd, type Containerd } from '../support/containerd.js';
import { OciLayout, pushImage, skopeoPull, type BuiltImage } from '../support/oci-image.js';
import { startTokenOrigin, type TokenOrigin } from '../support/token-origin.js';
import { basic, dirSummary } from './helpers.js';

const CREDS = 'erin:t0ken-pw';
const AUTH = basic('erin', 't0ken-pw');

/**
 * Issue #12 item 1: an origin with token auth that hands out anonymous tokens (Docker Hub, GHCR,
 * Quay, Harbor, GitLab). skopeo, podman and CRI-O send credentials only after a challenge at the
 * `GET /v2/` ping; containerd skips the ping.
 */
describe('agent in front of a token-auth origin with anonymous tokens (docker-registry auth: token, skopeo, containerd)', () => {
  let dir: string;
  let origin: TokenOrigin;
  let agent: AppProcess;
  let containerd: Containerd;
  let priv: BuiltImage;
  let pub: BuiltImage;
  let agentHost: string;

  beforeAll(async () => {
    dir = await tempDir('p2p-token-test-');
    [origin, containerd] = await Promise.all([startTokenOrigin({ user: { username: 'erin', password: 't0ken-pw' } }), startContainerd()]);
    const layout = new OciLayout(join(dir, 'layout'));
    priv = await layout.addImage('priv', [2048, 3 * 2 ** 20]);
    pub = await layout.addImage('pub', [1024, 2 * 2 ** 20]);
    await pushImage(layout.dir, 'priv', { host: origin.host, repo: 'private/app', tag: 'v1', creds: CREDS });
    await pushImage(layout.dir, 'pub', { host: origin.host, repo: 'public/app', tag: 'v1', creds: CREDS });
    agent = await startApp('agent', { registry: origin.url, dataDir: join(dir, 'data') }, { dir });
    agentHost = `127.0.0.1:${agent.port}`;
  });

  afterAll(async () => {
    await agent?.stop();
    await containerd?.stop();
    await origin?.stop();
  });

  it('GET /v2/ gives an anonymous client the challenge the origin gives it (as Basic); credentials are checked', async () => {
    const direct = await fetch(`${origin.url}/v2/`);
    expect([direct.status, direct.headers.get('www-authenticate')]).toEqual([401, expect.stringMatching(/^Bearer realm=/)]);
    const anonymous = await fetch(`${agent.url}/v2/`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic realm="/);
    expect(((await anonymous.json()) as { errors: { code: string }[] }).errors[0].code).toBe('UNAUTHORIZED');
    expect((await fetch(`${agent.url}/v2/`, { headers: { authorization: AUTH } })).status).toBe(200);
    const wrong = await fetch(`${agent.url}/v2/`, { headers: { authorization: basic('erin', 'nope') } });
    expect([wrong.status, wrong.headers.get('www-authenticate')]).toEqual([401, expect.stringMatching(/^Basic realm="/)]);
  });

  it('skopeo pulls a private image through the agent with --src-creds, and not without', async () => {
    const direct = await skopeoPull(`${origin.host}/private/app:v1`, join(dir, 'priv-direct'), { creds: CREDS });
    expect(direct.ok, direct.stderr).toBe(true);
    const viaAgent = await skopeoPull(`${agentHost}/private/app:v1`, join(dir, 'priv-agent'), { creds: CREDS });
    expect(viaAgent.ok, viaAgent.stderr).toBe(true);
    const s = await dirSummary(join(dir, 'priv-agent'));
    expect(s).toEqual(await dirSummary(join(dir, 'priv-direct')));
    expect(s.manifest).toBe(priv.digest);
    for (const l of priv.layers) expect(s.files[l.digest.slice(7)]).toBe(l.digest);
    const denied = await skopeoPull(`${agentHost}/private/app:v1`, join(dir, 'priv-anon'));
    expect(denied.ok).toBe(false);
    expect(denied.stderr).toMatch(/unauthorized|authentication required/i);
  });

  it('skopeo still pulls a public image through the agent without credentials (anonymous token at the origin)', async () => {
    const before = origin.tokenRequests.length;
    const r = await skopeoPull(`${agentHost}/public/app:v1`, join(dir, 'pub-anon'));
    expect(r.ok, r.stderr).toBe(true);
    const s = await dirSummary(join(dir, 'pub-anon'));
    expect(s.manifest).toBe(pub.digest);
    for (const l of pub.layers) expect(s.files[l.digest.slice(7)]).toBe(l.digest);
    // skopeo answers the Basic challenge with empty credentials; the agent takes them as anonymous
    // and never shows the origin's token server a credential it would reject.
    const asked = origin.tokenRequests.slice(before);
    expect(asked.length).toBeGreaterThan(0);
    expect(asked.every((t) => t.auth === 'none' && t.status === 200)).toBe(true);
  });

  it('containerd (no ping) is unaffected: public anonymously, private with --user, private without credentials refused', async () => {
    const hosts = await containerd.mirrorHosts(origin.host, agent.url);
    const pulledPub = await containerd.pull(`${origin.host}/public/app:v1`, { hostsDir: hosts });
    expect(pulledPub.ok, pulledPub.output).toBe(true);
    const pulledPriv = await containerd.pull(`${origin.host}/private/app:v1`, { hostsDir: hosts, user: CREDS });
    expect(pulledPriv.ok, pulledPriv.output).toBe(true);
    const denied = await containerd.pull(`${origin.host}/private/app:v1`, { hostsDir: hosts });
    expect(denied.ok).toBe(false);
    // Through the agent, not around it.
    expect(agent.output()).toMatch(new RegExp(`/v2/public/app/manifests/v1\\?ns=127\\.0\\.0\\.1%3A${origin.port}`));
    expect(agent.output()).toMatch(new RegExp(`/v2/private/app/blobs/${priv.layers[1].digest}\\?ns=127\\.0\\.0\\.1%3A${origin.port}`));
  });
});
