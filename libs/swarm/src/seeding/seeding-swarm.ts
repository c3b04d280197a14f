import { SwarmClient, type SwarmClientOptions } from '../client/swarm-client.js';
import { BlobSeeder, type SeedableBlobStore } from './blob-seeder.js';

export interface SeedingSwarm {
  client: SwarmClient;
  seeder: BlobSeeder;
}

/**
 * The process's swarm client and the seeder of its cache, created together because each needs the
 * other: the seeder seeds through the client, the client tells the seeder when a torrent stops so
 * the file is unpinned.
 */
export async function createSeedingSwarm(
  options: Omit<SwarmClientOptions, 'onStopSeeding'>,
  store: SeedableBlobStore,
): Promise<SeedingSwarm> {
  let seeder: BlobSeeder | undefined;
  const client = new SwarmClient({ ...options, onStopSeeding: (event) => seeder?.stopped(event.infoHash) });
  await client.ready();
  seeder = new BlobSeeder(client, store, options.trackers);
  return { client, seeder };
}
