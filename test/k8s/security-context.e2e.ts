import { execFile } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/app-process.js';
import { render, secretMount, setprivFor, workloadOf, type AppName, type K8sObject } from './k8s-manifests.js';

const run = promisify(execFile);
let objects: K8sObject[];
let work: string;

beforeAll(async () => {
  // setpriv can only take an identity away from root, as the container runtime does.
  expect(process.getuid?.(), 'these checks run as root').toBe(0);
  objects = await render('k8s');
  work = await tempDir('p2p-k8s-secctx-');
  chmodSync(work, 0o755); // the non-root identities must reach the dirs below
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

/** Runs `container`'s own command (its hostPath moved to `hostDir`) with the container's identity. */
function runAs(pod: IPodSpec, container: IContainer, command: string[], hostPath: string, hostDir: string) {
  const moved = command.map((arg) => arg.split(hostPath).join(hostDir));
  return run('setpriv', [...setprivFor(pod, container), ...moved]);
}

describe('securityContext: the hostPath data dirs work with the privileges the manifests grant', () => {
  it.each<AppName>(['agent', 'proxy'])(
    '%s: the init container hands a kubelet-made hostPath to the app user, at every start',
    async (app) => {
      const pod = workloadOf(objects, app).spec.template.spec;
      const volume = pod.volumes!.find((v) => v.hostPath)!;
      const hostPath = volume.hostPath!.path;
      const init = pod.initContainers!.find((c) => c.volumeMounts?.some((m) => m.name === volume.name && m.mountPath === hostPath))!;
      const main = pod.containers[0];
      const dir = join(work, app, hostPath);
      mkdirSync(dir, { recursive: true, mode: 0o755 }); // what kubelet's DirectoryOrCreate leaves: root:root 0755
      chmodSync(dir, 0o755);

      for (let start = 0; start < 2; start++) await runAs(pod, init, init.command!, hostPath, dir);
      const st = statSync(dir);
      const mainUser = [
        main.securityContext?.runAsUser ?? pod.securityContext!.runAsUser,
        main.securityContext?.runAsGroup ?? pod.securityContext!.runAsGroup,
      ];
      expect([st.uid, st.gid]).toEqual(mainUser);
      expect(st.mode & 0o777).toBe(0o750);

      // The app (non-root, no capabilities) can now write and delete in its data dir.
      await runAs(pod, main, ['sh', '-c', `echo ok > ${hostPath}/probe && rm ${hostPath}/probe`], hostPath, dir);

      // Without the added capabilities the init container could not do it: the grant is needed.
      const bare = { ...init, securityContext: { ...init.securityContext, capabilities: { drop: ['ALL'] } } };
      await expect(runAs(pod, bare, init.command!, hostPath, dir)).rejects.toThrow(/Operation not permitted/);
    },
  );

  it.each<AppName>(['agent', 'proxy', 'tracker'])(
    '%s: the app user reads the token files kubelet writes (defaultMode 0440, fsGroup)',
    async (app) => {
      const pod = workloadOf(objects, app).spec.template.spec;
      const { mountPath } = secretMount(objects, app);
      const volume = pod.volumes!.find((v) => v.secret?.secretName)!;
      const tokens = join(work, `${app}-tokens`);
      mkdirSync(tokens, { recursive: true });
      const file = join(tokens, 'admin-token');
      writeFileSync(file, 'token\n');
      chownSync(file, 0, pod.securityContext!.fsGroup!);
      chmodSync(file, volume.secret!.defaultMode!);
      expect(volume.secret!.defaultMode).toBe(0o440);
      const { stdout } = await runAs(pod, pod.containers[0], ['cat', `${mountPath}/admin-token`], mountPath, tokens);
      expect(stdout).toBe('token\n');
    },
  );
});
