/** OCI distribution error codes (plus Distribution's UNAVAILABLE / UNKNOWN for origin trouble). */
export type OciErrorCode =
  | 'BLOB_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'RANGE_INVALID'
  | 'SIZE_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS'
  | 'UNAVAILABLE'
  | 'UNKNOWN';

/**
 * A typed registry error. Libraries throw it; the mirror's one exception filter turns it into an
 * `{"errors":[{code,message,detail}]}` response with `status` and `headers`.
 */
export class OciError extends Error {
  constructor(
    readonly status: number,
    readonly code: OciErrorCode,
    message: string,
    readonly detail?: unknown,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'OciError';
  }

  body(): { errors: { code: string; message: string; detail?: unknown }[] } {
    return { errors: [{ code: this.code, message: this.message, ...(this.detail === undefined ? {} : { detail: this.detail }) }] };
  }
}

/** 401 asking the client for the credentials it holds for this registry (dockercfg / imagePullSecret). */
export class UnauthorizedError extends OciError {
  constructor(realm: string, message = 'authentication required') {
    super(401, 'UNAUTHORIZED', message, undefined, { 'www-authenticate': `Basic realm="${realm.replace(/"/g, '')}"` });
  }
}

/** The origin could not be reached or did not answer in time: clients (containerd) fall back to it directly. */
export class OriginUnavailableError extends OciError {
  constructor(reason: string) {
    super(503, 'UNAVAILABLE', 'origin registry unavailable', { reason });
  }
}

/** The origin answered something the agent cannot pass on (bad size, wrong digest). */
export class BadOriginResponseError extends OciError {
  constructor(reason: string) {
    super(502, 'UNKNOWN', 'bad response from origin registry', { reason });
  }
}

/** The bytes produced for a blob do not hash to its digest: nothing is cached, readers are aborted. */
export class DigestMismatchError extends Error {
  constructor(
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`content digest mismatch: expected ${expected}, got ${actual}`);
    this.name = 'DigestMismatchError';
  }
}
