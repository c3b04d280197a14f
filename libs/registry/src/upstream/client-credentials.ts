import { createHash } from 'node:crypto';

/**
 * What the client presented (its `Authorization` header), kept only in memory. `key` is a hash so
 * caches can be keyed per credentials without holding the secret in their keys.
 */
export class ClientCredentials {
  static readonly anonymous = new ClientCredentials(undefined);

  private constructor(readonly header: string | undefined) {}

  readonly key = this.header === undefined ? 'anonymous' : createHash('sha256').update(this.header).digest('hex');

  /** From a request's Authorization header; only Basic is passed on (a Bearer token was minted for us, not the origin). */
  static fromHeader(authorization: string | string[] | undefined): ClientCredentials {
    const value = Array.isArray(authorization) ? authorization[0] : authorization;
    if (!value || !/^basic\s+\S+/i.test(value.trim())) return ClientCredentials.anonymous;
    return new ClientCredentials(value.trim());
  }

  get isAnonymous(): boolean {
    return this.header === undefined;
  }

  toJSON(): string {
    return this.isAnonymous ? 'anonymous' : 'credentials(redacted)';
  }
}
