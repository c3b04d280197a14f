import { ConfigKey, IsDuration, IsRate } from '#ops';
import { SwarmFetcherConfig } from '#swarm';

/** The agent's config: a registry mirror on every node (DaemonSet, hostNetwork). */
export class AgentConfig extends SwarmFetcherConfig {
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
    kind: 'duration',
    doc: 'Longest silence from the origin while a response body is read (manifests, pass-through calls, blobs served uncached); past it the transfer is cut, logged, and the client sees a failed download or a 503 instead of a hang. Time the client takes to read does not count. 0 = no limit.',
  })
  @IsDuration()
  originBodyTimeout = 30;
}
