/** The first error code of an OCI error body (`{"errors":[{"code":…}]}`); undefined when it is none. */
export function ociErrorCode(body: string | Buffer): string | undefined {
  const parsed = JSON.parse(body.toString()) as { errors?: { code?: unknown }[] };
  const code = parsed.errors?.[0]?.code;
  return typeof code === 'string' ? code : undefined;
}
