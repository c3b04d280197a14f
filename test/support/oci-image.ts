import { execFile } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface BuiltImage {
  /** Tag inside the layout (`oci:DIR:TAG`). */
  tag: string;
  /** Digest of the top-level manifest (or of the index for multi-arch images). */
  digest: string;
  mediaType: string;
  /** Layer blobs (of every platform for an index). */
  layers: Descriptor[];
  configs: Descriptor[];
  /** Per-platform manifests when this is an index. */
  manifests: Descriptor[];
}

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';
const CONFIG = 'application/vnd.oci.image.config.v1+json';
const LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';

/**
 * Builds OCI image layouts on disk without Docker: each layer is an uncompressed tar holding one
 * file of random bytes (streamed from the CSPRNG in 1 MiB chunks, so a 1 GB layer never sits in
 * memory), with a config carrying rootfs.diff_ids and history, a manifest, and index.json.
 */
export class OciLayout {
  constructor(readonly dir: string) {}

  /** Adds a single-platform image under `tag`; `layerSizes` are the random payload sizes in bytes. */
  async addImage(tag: string, layerSizes: number[], platform = { os: 'linux', architecture: 'amd64' }): Promise<BuiltImage> {
    const m = await this.writeManifest(layerSizes, platform);
    await this.addToIndex({ ...m.manifest, annotations: { 'org.opencontainers.image.ref.name': tag } });
    return { tag, digest: m.manifest.digest, mediaType: MANIFEST, layers: m.layers, configs: [m.config], manifests: [] };
  }

  /** Adds a multi-arch image: an image index with one manifest per platform. */
  async addIndex(tag: string, platforms: { os: string; architecture: string; layerSizes: number[] }[]): Promise<BuiltImage> {
    const built = [];
    for (const p of platforms) built.push({ p, m: await this.writeManifest(p.layerSizes, { os: p.os, architecture: p.architecture }) });
    const index = {
      schemaVersion: 2,
      mediaType: INDEX,
      manifests: built.map(({ p, m }) => ({ ...m.manifest, platform: { os: p.os, architecture: p.architecture } })),
    };
    const desc = await this.writeJsonBlob(INDEX, index);
    await this.addToIndex({ ...desc, annotations: { 'org.opencontainers.image.ref.name': tag } });
    return {
      tag,
      digest: desc.digest,
      mediaType: INDEX,
      layers: built.flatMap(({ m }) => m.layers),
      configs: built.map(({ m }) => m.config),
      manifests: built.map(({ m }) => m.manifest),
    };
  }

  /** Path of a blob in the layout. */
  blobPath(digest: string): string {
    return join(this.dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
  }

  private entries: object[] = [];

  private async addToIndex(entry: object): Promise<void> {
    this.entries.push(entry);
    await mkdir(this.dir, { recursive: true });
    await writeFile(join(this.dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await writeFile(join(this.dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: INDEX, manifests: this.entries }));
  }

  private async writeManifest(layerSizes: number[], platform: { os: string; architecture: string }) {
    const layers: Descriptor[] = [];
    for (const [i, size] of layerSizes.entries()) layers.push(await this.writeLayer(`layer-${i}.bin`, size));
    const config = await this.writeJsonBlob(CONFIG, {
      created: '2026-01-01T00:00:00Z',
      ...platform,
      config: {},
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
      history: layers.map((_, i) => ({ created: '2026-01-01T00:00:00Z', created_by: `test layer ${i}` })),
    });
    const manifest = await this.writeJsonBlob(MANIFEST, { schemaVersion: 2, mediaType: MANIFEST, config, layers });
    return { manifest, config, layers };
  }

  private async writeJsonBlob(mediaType: string, value: unknown): Promise<Descriptor> {
    const bytes = Buffer.from(JSON.stringify(value));
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    await mkdir(join(this.dir, 'blobs', 'sha256'), { recursive: true });
    await writeFile(this.blobPath(digest), bytes);
    return { mediaType, digest, size: bytes.length };
  }

  /** An uncompressed tar with one random file: the layer digest equals its diff_id. */
  private async writeLayer(fileName: string, size: number): Promise<Descriptor> {
    await mkdir(join(this.dir, 'blobs', 'sha256'), { recursive: true });
    const tmp = join(this.dir, `.layer-${process.pid}-${Math.random().toString(36).slice(2)}`);
    const hash = createHash('sha256');
    const out = createWriteStream(tmp);
    await pipeline(
      tarStream(fileName, size),
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          hash.update(chunk);
          yield chunk;
        }
      },
      out,
    );
    const digest = `sha256:${hash.digest('hex')}`;
    await rename(tmp, this.blobPath(digest));
    return { mediaType: LAYER_TAR, digest, size: (await stat(this.blobPath(digest))).size };
  }
}

function tarStream(name: string, size: number): Readable {
  return Readable.from(
    (function* () {
      yield tarHeader(name, size);
      let left = size;
      while (left > 0) {
        const n = Math.min(left, 1 << 20);
        yield randomFillSync(Buffer.allocUnsafe(n));
        left -= n;
      }
      const pad = (512 - (size % 512)) % 512;
      yield Buffer.alloc(pad + 1024);
    })(),
    { objectMode: false },
  );
}

function tarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(size.toString(8).padStart(11, '0') + '\0', 124);
  h.write('15120000000\0', 136);
  h.write('        ', 148);
  h.write('0', 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return h;
}

/** `skopeo copy --preserve-digests` of `oci:DIR:TAG` to `docker://HOST/REPO:TAG` over plain HTTP (all platforms; layers stay uncompressed so digests match the layout). */
export async function pushImage(
  layoutDir: string,
  tag: string,
  dest: { host: string; repo: string; tag?: string; creds?: string },
): Promise<void> {
  await exec(
    'skopeo',
    [
      'copy',
      '--all',
      '--quiet',
      '--preserve-digests',
      '--dest-tls-verify=false',
      ...(dest.creds ? ['--dest-creds', dest.creds] : []),
      `oci:${layoutDir}:${tag}`,
      `docker://${dest.host}/${dest.repo}:${dest.tag ?? tag}`,
    ],
    { maxBuffer: 16 * 1024 * 1024 },
  );
}

/** `skopeo copy docker://HOST/REF dir:OUT` over plain HTTP; resolves with skopeo's exit status and output. */
export async function skopeoPull(
  src: string,
  out: string,
  options: { creds?: string; all?: boolean } = {},
): Promise<{ ok: boolean; stderr: string }> {
  await rm(out, { recursive: true, force: true });
  await mkdir(join(out, '..'), { recursive: true });
  try {
    await exec(
      'skopeo',
      [
        'copy',
        '--quiet',
        '--src-tls-verify=false',
        ...(options.all ? ['--all'] : []),
        ...(options.creds ? ['--src-creds', options.creds] : []),
        `docker://${src}`,
        `dir:${out}`,
      ],
      {
        maxBuffer: 16 * 1024 * 1024,
        timeout: 120_000,
      },
    );
    return { ok: true, stderr: '' };
  } catch (err) {
    return { ok: false, stderr: String((err as { stderr?: string }).stderr ?? err) };
  }
}

/** sha256 of a file, streamed. */
export async function fileDigest(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return `sha256:${hash.digest('hex')}`;
}
