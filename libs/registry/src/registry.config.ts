import { ArrayMaxSize, IsArray, IsNumber, IsString, IsUrl, Max, Min } from 'class-validator';
import { BaseAppConfig, ConfigKey, HTTP_URL, IsDiskAmount, IsDuration } from '#ops';

/** Keys of the apps that keep a verified blob cache and pull from the origin registry (agent, proxy). */
export class CacheNodeConfig extends BaseAppConfig {
  @ConfigKey({ kind: 'url', doc: 'Origin registry base URL (scheme://host[:port]) that plain pulls are served from.' })
  @IsUrl(HTTP_URL)
  registry = 'https://registry-1.docker.io';

  @ConfigKey({
    kind: 'list',
    doc: 'More origin base URLs accelerated in containerd mirror mode (requests carrying ?ns=<host>). Any other ns is refused.',
    defaultText: '[]',
  })
  @IsArray()
  @ArrayMaxSize(256)
  @IsUrl(HTTP_URL, { each: true })
  registries: string[] = [];

  @ConfigKey({ kind: 'string', doc: 'Cache directory: verified blobs, temp files, torrent state.' })
  @IsString()
  dataDir = '';

  /*
   * Disk-safe defaults. The agent's cache shares the node's system disk with containerd's images,
   * and kubelet acts on free space: image garbage collection above 85 % used, pod eviction below
   * 15 % free on the image filesystem (10 % on nodefs). A 20 % floor keeps the cache from ever
   * being what pushes a node there; the quota is relative to the disk so one default fits a 50 GB
   * cloud disk and a 2 TB local one. The defaults are written as they would be in a file; loadConfig
   * turns every `disk` key into bytes against the data dir's filesystem, hence the cast.
   */
  @ConfigKey({
    kind: 'disk',
    doc: 'Free-space floor of the data dir\'s filesystem: the cache evicts to stay above it, stores nothing that would cross it (those blobs pass through uncached), and readiness fails below it. A size ("5GiB") or a percentage of the filesystem ("20%"); keep it above kubelet\'s eviction thresholds (15 % free by default).',
    defaultText: '20%',
  })
  @IsDiskAmount()
  minFreeSpace: number = '20%' as unknown as number;

  @ConfigKey({
    kind: 'disk',
    doc: 'Cache quota: a size ("50GB") or a percentage of the data dir\'s filesystem ("10%"); 0 = no quota, only minFreeSpace protects the disk.',
    defaultText: '10%',
  })
  @IsDiskAmount()
  cacheMaxBytes: number = '10%' as unknown as number;

  @ConfigKey({
    kind: 'duration',
    doc: "A client that takes no bytes of a blob response (agent: a workload's pull; proxy: an agent's relay) for this long is disconnected, its buffers freed (agent: logged as outcome=cut:idle, counted in p2p_blob_responses_total). 0 = never.",
  })
  @IsDuration()
  clientIdleTimeout = 60;

  @ConfigKey({ kind: 'number', doc: 'Eviction starts when the cache passes this fraction of cacheMaxBytes.' })
  @IsNumber()
  @Min(0.05)
  @Max(1)
  cacheHighWatermark = 0.9;

  @ConfigKey({ kind: 'number', doc: 'Eviction (LRU, blobs not being read) stops at this fraction of cacheMaxBytes.' })
  @IsNumber()
  @Min(0)
  @Max(1)
  cacheLowWatermark = 0.8;

  @ConfigKey({ kind: 'duration', doc: 'How long a "these credentials may read this repo" decision at the origin is reused.' })
  @IsDuration()
  authCacheTtl = 60;

  @ConfigKey({ kind: 'duration', doc: 'TCP connect timeout towards the origin registry.', formerly: 'upstreamConnectTimeout' })
  @IsDuration()
  originConnectTimeout = 10;

  @ConfigKey({ kind: 'duration', doc: 'Time allowed for the origin to send response headers.', formerly: 'upstreamHeadersTimeout' })
  @IsDuration()
  originHeadersTimeout = 30;
}
