import { ArrayMaxSize, IsArray, IsIn, IsInt, IsNumber, IsString, IsUrl, Max, Min } from 'class-validator';
import { ConfigKey } from './config-key.decorator.js';
import { IsDiskAmount, IsDuration, IsRate } from './unit.validators.js';

const HTTP_URL = { require_tld: false, require_protocol: true, protocols: ['http', 'https'] };

/**
 * Keys every app has. Unit-typed keys (rates, sizes, durations) accept strings with units in the
 * file and the environment; once loaded they hold plain numbers (bytes, bytes/s, seconds), which is
 * why they are typed `number` here.
 */
export class BaseAppConfig {
  @ConfigKey({ kind: 'number', doc: "HTTP port (health, metrics, admin API and the app's own API). 0 picks a free port." })
  @IsInt()
  @Min(0)
  @Max(65535)
  port = 0;

  @ConfigKey({ kind: 'string', doc: 'Address the HTTP server listens on.' })
  @IsString()
  host = '0.0.0.0';

  @ConfigKey({
    kind: 'string',
    doc: 'File holding the admin bearer token for /admin/*. Env P2P_ADMIN_TOKEN takes precedence. No token → admin API answers 403.',
    defaultText: '"" (admin API off)',
  })
  @IsString()
  adminTokenFile = '';

  @ConfigKey({
    kind: 'string',
    doc: 'File holding the shared swarm token that agents, proxies and trackers present to each other. Env P2P_SWARM_TOKEN takes precedence.',
    defaultText: '"" (no token: swarm open to anyone who can reach it)',
  })
  @IsString()
  swarmTokenFile = '';

  @ConfigKey({ kind: 'string', doc: 'Lowest log level written: error, warn, log, debug or verbose.' })
  @IsIn(['error', 'warn', 'log', 'debug', 'verbose'])
  logLevel = 'log';

  @ConfigKey({ kind: 'string', doc: 'auto = readable text on a TTY, JSON lines otherwise; or force json / text.' })
  @IsIn(['auto', 'json', 'text'])
  logFormat = 'auto';

  @ConfigKey({ kind: 'duration', doc: 'On SIGTERM, how long in-flight requests may run before the process exits anyway.' })
  @IsDuration()
  shutdownGraceSeconds = 25;
}

/** Keys of the apps that keep a blob cache and talk to the origin registry and the swarm (agent, proxy). */
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

  @ConfigKey({ kind: 'number', doc: 'BitTorrent listen port.' })
  @IsInt()
  @Min(0)
  @Max(65535)
  p2pPort = 0;

  @ConfigKey({
    kind: 'rate',
    doc: 'Upload limit for seeding to peers, bytes/s (0 = unlimited). Live: PATCH /admin/rate.',
    defaultText: '0 (unlimited)',
  })
  @IsRate()
  uploadRate = 0;

  @ConfigKey({ kind: 'list', doc: 'Tracker announce URLs (every replica: clients announce to all of them).', defaultText: '[]' })
  @IsArray()
  @ArrayMaxSize(64)
  @IsUrl(HTTP_URL, { each: true })
  trackers: string[] = [];

  @ConfigKey({ kind: 'duration', doc: 'How long a blob keeps being seeded after its last use.', defaultText: '1h' })
  @IsDuration()
  seedTtl = 3600;

  @ConfigKey({ kind: 'number', doc: 'Most torrents seeded at once; the least recently used stop first.' })
  @IsInt()
  @Min(1)
  @Max(100_000)
  maxSeeding = 200;
}
