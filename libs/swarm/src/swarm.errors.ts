/** Base of the errors libs/swarm throws; each app's exception filter maps them to responses. */
class SwarmError extends Error {
  override name = 'SwarmError';
}

/** Metainfo that is not a single-file blob torrent (bad input → 4xx at the edge). */
export class InvalidMetainfoError extends SwarmError {
  override name = 'InvalidMetainfoError';
}

/** The swarm client was destroyed or the torrent was removed while someone waited for it. */
export class TorrentGoneError extends SwarmError {
  override name = 'TorrentGoneError';
}

/** No proxy is known and healthy for a digest. */
export class NoProxyAvailableError extends SwarmError {
  override name = 'NoProxyAvailableError';
}
