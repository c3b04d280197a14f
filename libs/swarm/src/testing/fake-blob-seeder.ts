import type { BlobSeeding } from '../seeding/blob-seeding.js';

/** Records what it was asked to seed. Test-only. */
export class FakeBlobSeeder implements BlobSeeding {
  readonly seeded: string[] = [];

  seedWith(digest: string): Promise<void> {
    this.seeded.push(digest);
    return Promise.resolve();
  }
}
