import { ArrayMaxSize, IsArray, IsInt, IsString, IsUrl, Max, Min } from 'class-validator';
import { ConfigKey, HTTP_URL, IsDuration, IsRate, IsSize } from '#ops';
import { CacheNodeConfig } from '#registry';

/** Keys of the apps that seed their cache to the swarm (agent, proxy). */
export class SwarmNodeConfig extends CacheNodeConfig {
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

/** Keys of an app that fetches blobs from the swarm through the proxies (the agent). */
export class SwarmFetcherConfig extends SwarmNodeConfig {
  @ConfigKey({
    kind: 'list',
    doc: 'Proxy base URLs (http://host:5005), or one URL whose host is a headless Service name: every address it resolves to is a proxy.',
    defaultText: '[] (no swarm: pulls go to the origin)',
  })
  @IsArray()
  @ArrayMaxSize(1024)
  @IsString({ each: true })
  proxies: string[] = [];

  @ConfigKey({
    kind: 'string',
    doc: "PEM file with the CA that https:// proxies' certificates (proxy tlsCertFile) must chain to; it replaces the system CAs for proxy connections, and a proxy it does not vouch for is refused (pulls go to the origin). Proxies are reached over TLS when listed as https:// URLs; http:// ones get clients' registry credentials and the swarm token in clear (warned at start).",
    defaultText: '"" (system CAs)',
  })
  @IsString()
  proxyCaFile = '';

  @ConfigKey({ kind: 'duration', doc: 'How often proxy DNS names are re-resolved and proxy health re-checked.' })
  @IsDuration()
  proxyRefreshInterval = 30;

  @ConfigKey({
    kind: 'duration',
    doc: "A swarm download that receives nothing for this long continues from the owning proxy's relay, then the origin (same client response). The reader's next piece is fetched over the relay alone after 2 × this when no connected peer has it (8 × when one does).",
  })
  @IsDuration()
  stallTimeout = 10;

  @ConfigKey({
    kind: 'rate',
    doc: 'For a swarm download into a separate file (rare: the fill file was in use): it still counts as progressing while bytes arrive at least this fast. A download into the fill file counts any byte as progress and rescues late pieces itself.',
    defaultText: '100KB',
  })
  @IsRate()
  stallMinRate = 100_000;

  @ConfigKey({ kind: 'size', doc: 'Blobs smaller than this (configs, small layers) go straight to the origin.', defaultText: '1MiB' })
  @IsSize()
  p2pMinSize = 2 ** 20;
}
