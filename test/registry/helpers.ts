import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileDigest } from '../support/oci-image.js';

export const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

/** A skopeo `dir:` copy reduced to comparable facts: manifest bytes' digest and each blob file's digest. */
export async function dirSummary(dir: string): Promise<{ manifest: string; files: Record<string, string> }> {
  const files: Record<string, string> = {};
  for (const name of (await readdir(dir)).sort()) if (name !== 'version') files[name] = await fileDigest(join(dir, name));
  return { manifest: files['manifest.json'], files };
}

/** Value of a Prometheus sample, or 0. */
export function metric(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line ? Number(line.split(' ').at(-1)) : 0;
}
