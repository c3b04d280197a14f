import { createHash } from 'node:crypto';

/**
 * What the client presented (its `Authorization` header), kept only in memory. `key` is a hash so
 * caches can be keyed per credentials without holding the secret in their keys.
 */
export class ClientCredentials {
  static readonly anonymous = new ClientCredentials(undefined);

  private constructor(readonly header: string | undefined) {}

  readonly key = this.header === undefined ? 'anonymous' : createHash('sha256').update(this.header).digest('hex');

  /**
   * From a request's Authorization header; only Basic is passed on (a Bearer token was minted for
   * us, not the origin). Basic with an empty user and password is anonymous: that is what
   * skopeo, podman and CRI-O send after a Basic challenge when they hold no credentials, and a
   * Bearer origin's token endpoint may refuse it where it would give an anonymous token.
   */
  static fromHeader(authorization: string | string[] | undefined): ClientCredentials {
    const value = Array.isArray(authorization) ? authorization[0] : authorization;
    if (!value) return ClientCredentials.anonymous;
    const m = /^basic\s+(\S+)/i.exec(value.trim());
    if (!m) return ClientCredentials.anonymous;
    if (Buffer.from(m[1], 'base64').toString('utf8') === ':') return ClientCredentials.anonymous;
    return new ClientCredentials(value.trim());
  }

  get isAnonymous(): boolean {
    return this.header === undefined;
  }

  toJSON(): string {
    return this.isAnonymous ? 'anonymous' : 'credentials(redacted)';
  }
}
