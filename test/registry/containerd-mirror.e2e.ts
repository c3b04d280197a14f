import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findLogs, startApp, tempDir, type AppProcess } from '../support/app-process.js';
import { startContainerd, type Containerd } from '../support/containerd.js';
import { OciLayout, pushImage, type BuiltImage } from '../support/oci-image.js';
import { startOriginRegistry, type OriginRegistry } from '../support/origin-registry.js';

describe('containerd pulls through the agent in mirror mode (hosts.toml, ?ns=)', () => {
  let dir: string;
  let privateOrigin: OriginRegistry;
  let publicOrigin: OriginRegistry;
  let agent: AppProcess;
  let containerd: Containerd;
  let image: BuiltImage;
  let multi: BuiltImage;

  beforeAll(async () => {
    dir = await tempDir('p2p-ctrd-test-');
    [privateOrigin, publicOrigin, containerd] = await Promise.all([
      startOriginRegistry({ auth: { username: 'carol', password: 'pw' } }),
      startOriginRegistry(),
      startContainerd(),
    ]);
    const layout = new OciLayout(join(dir, 'layout'));
    image = await layout.addImage('v1', [1024, 4 * 2 ** 20, 16 * 2 ** 20]);
    multi = await layout.addIndex('multi', [
      { os: 'linux', architecture: 'amd64', layerSizes: [2 ** 20] },
      { os: 'linux', architecture: 'arm64', layerSizes: [2 ** 20] },
    ]);
    await pushImage(layout.dir, 'v1', { host: privateOrigin.host, repo: 'private/app', creds: 'carol:pw' });
    await pushImage(layout.dir, 'multi', { host: publicOrigin.host, repo: 'public/multi', tag: 'v1' });
    agent = await startApp('agent', { registry: privateOrigin.url, registries: [publicOrigin.url], dataDir: join(dir, 'data') }, { dir });
  });

  afterAll(async () => {
    await agent?.stop();
    await containerd?.stop();
    await privateOrigin?.stop();
    await publicOrigin?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('ctr images pull of a private image succeeds through the agent with --user, and fails without credentials', async () => {
    const hosts = await containerd.mirrorHosts(privateOrigin.host, agent.url);
    const denied = await containerd.pull(`${privateOrigin.host}/private/app:v1`, { hostsDir: hosts });
    expect(denied.ok).toBe(false);
    const pulled = await containerd.pull(`${privateOrigin.host}/private/app:v1`, { hostsDir: hosts, user: 'carol:pw' });
    expect(pulled.ok, pulled.output).toBe(true);
    // Every blob went through the agent (?ns=) and left the origin once.
    for (const l of image.layers) expect(privateOrigin.blobGets(l.digest), l.digest).toBe(1);
    expect(
      findLogs(agent.logs(), {
        msg: 'request',
        method: 'GET',
        url: new RegExp(`^/v2/private/app/blobs/${image.layers[2].digest}\\?ns=127\\.0\\.0\\.1`),
      }),
    ).not.toEqual([]);
    const again = await containerd.pull(`${privateOrigin.host}/private/app:v1`, { hostsDir: hosts, user: 'carol:pw' });
    expect(again.ok, again.output).toBe(true);
    for (const l of image.layers) expect(privateOrigin.blobGets(l.digest), l.digest).toBe(1);
  });

  it('pulls a public multi-arch image from a second accelerated registry (registries list) anonymously', async () => {
    const hosts = await containerd.mirrorHosts(publicOrigin.host, agent.url);
    const pulled = await containerd.pull(`${publicOrigin.host}/public/multi:v1`, { hostsDir: hosts });
    expect(pulled.ok, pulled.output).toBe(true);
    expect(agent.output()).toMatch(new RegExp(`/v2/public/multi/manifests/v1\\?ns=127\\.0\\.0\\.1%3A${publicOrigin.port}`));
    const amd64Layer = multi.layers[0];
    expect(publicOrigin.blobGets(amd64Layer.digest)).toBe(1);
    const again = await containerd.pull(`${publicOrigin.host}/public/multi:v1`, { hostsDir: hosts });
    expect(again.ok, again.output).toBe(true);
    expect(publicOrigin.blobGets(amd64Layer.digest)).toBe(1);
  });
});
