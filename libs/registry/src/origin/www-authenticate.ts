/** A parsed `WWW-Authenticate` challenge from the origin. */
export interface AuthChallenge {
  scheme: 'basic' | 'bearer';
  realm?: string;
  service?: string;
  scope?: string;
}

/** Parses the first Basic or Bearer challenge; undefined for anything else. */
export function parseChallenge(header: string | string[] | undefined): AuthChallenge | undefined {
  for (const value of Array.isArray(header) ? header : header ? [header] : []) {
    const m = /^\s*(basic|bearer)\b(.*)$/i.exec(value);
    if (!m) continue;
    const params: Record<string, string> = {};
    for (const p of m[2].matchAll(/([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g)) {
      // The quoted or the bare form: the group that did not match is undefined (the types say string).
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
      params[p[1].toLowerCase()] = p[2] ?? p[3];
    }
    return { scheme: m[1].toLowerCase() as AuthChallenge['scheme'], realm: params.realm, service: params.service, scope: params.scope };
  }
  return undefined;
}
