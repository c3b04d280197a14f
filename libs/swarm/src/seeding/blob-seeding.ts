/** What the swarm fetcher needs of the seeder (BlobSeeder; an in-memory fake in specs). */
export interface BlobSeeding {
  /** Seeds the cached blob `digest` with a torrent already checked to describe it. */
  seedWith(digest: string, metainfo: Uint8Array): Promise<void>;
}
