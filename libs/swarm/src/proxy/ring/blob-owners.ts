import type { Dispatcher } from 'undici';

/** What the swarm fetcher needs of the proxy ring (ProxyRing; an in-memory fake in specs). */
export interface BlobOwners {
  /** How to reach the proxies (their TLS settings); undefined: undici's global dispatcher. */
  readonly dispatcher?: Dispatcher;
  /** Proxy base URLs for `digest`, preferred first; throws NoProxyAvailableError when none is known. */
  ownersFor(digest: string): string[];
  /** `url` could not be reached: ranked last until found healthy again. */
  markDown(url: string): void;
  /** `url` answered but failed `digest`: counted, several blobs in a row rank it down. */
  blobFailed(url: string, digest: string): void;
  /** `url` served a blob: its run of failures is over. */
  blobServed(url: string): void;
}
