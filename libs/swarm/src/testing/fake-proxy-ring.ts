import type { BlobOwners } from '../proxy/ring/blob-owners.js';
import { NoProxyAvailableError } from '../swarm.errors.js';

/** An in-memory proxy ring: fixed owners (none: NoProxyAvailableError), recording what it is told. Test-only. */
export class FakeProxyRing implements BlobOwners {
  readonly markedDown: string[] = [];
  /** `<proxy> <digest>` per blobFailed call. */
  readonly blobFailures: string[] = [];
  readonly served: string[] = [];

  constructor(public owners: string[] = ['http://proxy-a.test:5005']) {}

  ownersFor(): string[] {
    if (this.owners.length === 0) throw new NoProxyAvailableError('no proxy configured or resolved');
    return [...this.owners];
  }

  markDown(url: string): void {
    this.markedDown.push(url);
  }

  blobFailed(url: string, digest: string): void {
    this.blobFailures.push(`${url} ${digest}`);
  }

  blobServed(url: string): void {
    this.served.push(url);
  }
}
