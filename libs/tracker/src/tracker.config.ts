import { IsInt, Max, Min } from 'class-validator';
import { BaseAppConfig, ConfigKey, IsDuration, IsRate } from '#ops';

/** Keys of the private BitTorrent tracker (announce limits, swarm lists). */
export class TrackerServerConfig extends BaseAppConfig {
  @ConfigKey({
    kind: 'rate',
    doc: 'Announces per second allowed from one client address (0 = unlimited). Live: PATCH /admin/rate.',
  })
  @IsRate()
  announceRate = 20;

  @ConfigKey({ kind: 'duration', doc: 'Re-announce interval told to clients.' })
  @IsDuration()
  announceInterval = 60;

  @ConfigKey({ kind: 'number', doc: 'Peers remembered per swarm; keep it above the node count.' })
  @IsInt()
  @Min(10)
  @Max(1_000_000)
  peersCacheLength = 5000;

  @ConfigKey({
    kind: 'duration',
    doc: 'A peer that has not announced for this long is dropped from its swarm.',
    defaultText: '3× announceInterval when 0',
  })
  @IsDuration()
  peersCacheTtl = 0;

  @ConfigKey({
    kind: 'duration',
    doc: 'A swarm nobody announced to for this long is deleted, so memory stays bounded.',
    defaultText: '3× announceInterval when 0',
  })
  @IsDuration()
  swarmIdleTimeout = 0;
}
