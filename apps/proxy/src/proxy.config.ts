import { IsInt, IsNotEmpty, IsString, Max, Min, ValidateIf } from 'class-validator';
import { ConfigKey, IsRate } from '#ops';
import { SwarmNodeConfig } from '#swarm';

/** The proxy's config: the original seed that pulls each blob from the origin once. */
export class ProxyConfig extends SwarmNodeConfig {
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
    doc: 'Peers unchoked at once per torrent (classic BitTorrent: 4). Few slots make agents trade pieces among themselves instead of all pulling from the proxy (BENCHMARKS.md, N=20: 67 % of bytes from peers with 4 vs 50 % with 64, warm pull 29 % faster); an agent left choked long enough to stall continues from the proxy over HTTP, not from the origin.',
  })
  @IsInt()
  @Min(1)
  @Max(1000)
  uploadSlots = 4;

  @ConfigKey({
    kind: 'string',
    doc: "PEM certificate (chain) for the proxy's HTTP port; with tlsKeyFile the whole port (torrent API, relay, health, metrics, admin) is HTTPS only, and agents list the proxy as https:// (agent proxyCaFile). Without it agents send clients' registry credentials and the swarm token in clear (warned at start). Read at start.",
    defaultText: '"" (plain HTTP)',
  })
  @ValidateIf((c: ProxyConfig) => c.tlsCertFile !== '' || c.tlsKeyFile !== '')
  @IsNotEmpty({ message: 'tlsCertFile must be set with tlsKeyFile (TLS needs both)' })
  @IsString()
  tlsCertFile = '';

  @ConfigKey({
    kind: 'string',
    doc: "PEM private key of tlsCertFile (mounted from a Kubernetes TLS Secret's tls.key). Read at start.",
    defaultText: '""',
  })
  @ValidateIf((c: ProxyConfig) => c.tlsCertFile !== '' || c.tlsKeyFile !== '')
  @IsNotEmpty({ message: 'tlsKeyFile must be set with tlsCertFile (TLS needs both)' })
  @IsString()
  tlsKeyFile = '';
}
