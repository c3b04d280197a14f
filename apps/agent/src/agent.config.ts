import { ArrayMaxSize, IsArray, IsString } from 'class-validator';
import { CacheNodeConfig, ConfigKey, IsDuration, IsRate, IsSize } from '#ops';

/** The agent's config: a registry mirror on every node (DaemonSet, hostNetwork). */
export class AgentConfig extends CacheNodeConfig {
  override port = 5004;
  override dataDir = '/p2p_agent_data';
  override p2pPort = 6881;

  @ConfigKey({
    kind: 'rate',
    doc: 'Node-wide download limit, bytes/s, for peer and origin traffic together (0 = unlimited). Live: PATCH /admin/rate.',
    defaultText: '0 (unlimited)',
  })
  @IsRate()
  downloadRate = 0;

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

  @ConfigKey({
    kind: 'duration',
    doc: 'Longest silence from the origin while a response body is read (manifests, pass-through calls, blobs served uncached); past it the transfer is cut, logged, and the client sees a failed download or a 503 instead of a hang. Time the client takes to read does not count. 0 = no limit.',
  })
  @IsDuration()
  originBodyTimeout = 30;

  @ConfigKey({ kind: 'size', doc: 'Blobs smaller than this (configs, small layers) go straight to the origin.', defaultText: '1MiB' })
  @IsSize()
  p2pMinSize = 2 ** 20;
}
