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

/**
 * A proxy's torrent answer the swarm fetcher cannot use: no torrent at all (a body that does not
 * decode, cut short, too large), a torrent of another blob, no peer port, or a 5xx for the blob.
 * Counted against the proxy for that blob (`blobFailed`); the fill goes on with its next fetcher.
 */
export class ProxyAnswerError extends SwarmError {
  override name = 'ProxyAnswerError';

  constructor(
    readonly proxy: string,
    /** What was wrong with the answer (the message says which proxy too). */
    readonly reason: string,
    /** The HTTP status when the proxy answered an error status. */
    readonly status?: number,
  ) {
    super(`proxy ${proxy}: ${reason}`);
  }
}
