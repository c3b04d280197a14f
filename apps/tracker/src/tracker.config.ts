import { TrackerServerConfig } from '#tracker';

/** The tracker's config: a private BitTorrent tracker for the cluster. */
export class TrackerConfig extends TrackerServerConfig {
  override port = 6969;
}
