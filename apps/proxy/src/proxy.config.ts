import { IsInt, Max, Min } from 'class-validator';
import { CacheNodeConfig, ConfigKey, IsRate } from '#ops';

/** The proxy's config: the original seed that pulls each blob from the origin once. */
export class ProxyConfig extends CacheNodeConfig {
  override port = 5005;
  override dataDir = '/p2p_proxy_data';
  override p2pPort = 6882;

  @ConfigKey({
    kind: 'rate',
    doc: 'Limit on bytes/s fetched from the origin registry (0 = unlimited). Live: PATCH /admin/rate.',
    defaultText: '0 (unlimited)',
  })
  @IsRate()
  originRate = 0;

  @ConfigKey({
    kind: 'number',
    doc: 'Peers unchoked at once per torrent. Fewer (e.g. 4) make agents trade more and finish sooner, but agents left choked may time out to the origin (BENCHMARKS.md: 4 vs 64 at N=20).',
  })
  @IsInt()
  @Min(1)
  @Max(1000)
  uploadSlots = 64;
}
