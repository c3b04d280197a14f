import { Readable } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { OciError } from '../oci/oci.errors.js';
import { ClientCredentials } from '../origin/client-credentials.js';
import type { OriginClient, OriginResponse } from '../origin/origin.client.js';
import type { BlobRequest } from '../sources/blob-source.js';
import { BlobAccessAuthorizer } from './blob-access.authorizer.js';

const DIGEST = `sha256:${'b'.repeat(64)}`;

function request(repository = 'team/app', credentials = ClientCredentials.anonymous): BlobRequest {
  return { origin: { base: 'http://origin.test', host: 'origin.test' }, repository, digest: DIGEST, credentials };
}

/** An origin client whose HEADs answer `statuses` in turn (the last repeats), each after a turn of the event loop. */
function fakeOrigin(...statuses: number[]) {
  const heads: string[] = [];
  const client = {
    request: vi.fn(async (options: { path: string }) => {
      heads.push(options.path);
      await new Promise((r) => setImmediate(r));
      const status = statuses.length > 1 ? statuses.shift()! : statuses[0];
      return { status, headers: { 'content-length': '1234' }, body: Readable.from([]) } satisfies OriginResponse;
    }),
  };
  return { client: client as unknown as OriginClient, heads };
}

describe(BlobAccessAuthorizer.name, () => {
  it('asks the origin once for concurrent requests and reuses the decision within the TTL', async () => {
    const { client, heads } = fakeOrigin(200);
    const authorizer = new BlobAccessAuthorizer(client, 60_000);
    const sizes = await Promise.all(Array.from({ length: 10 }, () => authorizer.authorize(request())));
    expect(sizes).toEqual(Array(10).fill(1234));
    expect(await authorizer.authorize(request())).toBe(1234);
    expect(heads).toEqual([`/v2/team/app/blobs/${DIGEST}`]);
  });

  it('keys decisions per credentials and repository', async () => {
    const { client, heads } = fakeOrigin(200);
    const authorizer = new BlobAccessAuthorizer(client, 60_000);
    await authorizer.authorize(request('team/app'));
    await authorizer.authorize(request('team/other'));
    await authorizer.authorize(request('team/app', ClientCredentials.fromHeader(`Basic ${Buffer.from('u:p').toString('base64')}`)));
    expect(heads).toHaveLength(3);
  });

  it('does not cache a denial: fixed credentials work at once', async () => {
    const { client, heads } = fakeOrigin(403, 200);
    const authorizer = new BlobAccessAuthorizer(client, 60_000);
    await expect(authorizer.authorize(request())).rejects.toSatisfy((e: unknown) => e instanceof OciError && e.status === 403);
    expect(await authorizer.authorize(request())).toBe(1234);
    expect(heads).toHaveLength(2);
  });

  it('asks again once the TTL has passed, and every time with a TTL of 0', async () => {
    // Real time (a few ms): lru-cache reads its own clock.
    const { client, heads } = fakeOrigin(200);
    const authorizer = new BlobAccessAuthorizer(client, 30);
    await authorizer.authorize(request());
    await authorizer.authorize(request());
    expect(heads).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 60));
    await authorizer.authorize(request());
    expect(heads).toHaveLength(2);

    const other = fakeOrigin(200);
    const noReuse = new BlobAccessAuthorizer(other.client, 0);
    await noReuse.authorize(request());
    await new Promise((r) => setTimeout(r, 5));
    await noReuse.authorize(request());
    expect(other.heads).toHaveLength(2);
  });
});
