import { SwarmClient, type SwarmClientOptions } from '../client/swarm-client.js';
import { expandServiceUrls } from '../proxy/ring/service-urls.js';
import { BlobSeeder, type SeedableBlobStore } from './blob-seeder.js';

export interface SeedingSwarm {
  client: SwarmClient;
  seeder: BlobSeeder;
}

/**
 * The process's swarm client and the seeder of its cache, created together because each needs the
 * other: the seeder seeds through the client, the client tells the seeder when a torrent stops so
 * the file is unpinned. Tracker URLs naming a headless Service are expanded to every replica once,
 * at start (a tracker that moves later is reached again after a restart; the proxy stays a direct peer).
 */
export async function createSeedingSwarm(
  options: Omit<SwarmClientOptions, 'onStopSeeding' | 'onCorruptFile'>,
  store: SeedableBlobStore,
): Promise<SeedingSwarm> {
  // eslint-disable-next-line prefer-const -- assigned once below; the client's callbacks made before it read it
  let seeder: BlobSeeder | undefined;
  const trackers = await expandServiceUrls(options.trackers);
  const client = new SwarmClient({
    ...options,
    trackers,
    onStopSeeding: (event) => seeder?.stopped(event.infoHash),
    onCorruptFile: (event) => void seeder?.corrupt(`sha256:${event.name}`),
  });
  await client.ready();
  // Torrents carry the configured URLs (the same on every host keeps metainfo identical); each
  // client announces to its own expanded list anyway.
  seeder = new BlobSeeder(client, store, options.trackers);
  return { client, seeder };
}
