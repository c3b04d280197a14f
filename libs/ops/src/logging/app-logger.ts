import { ConsoleLogger, type LogLevel } from '@nestjs/common';
import type { BaseAppConfig } from '../config/base.config.js';

const LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'];

/** JSON lines when not on a TTY (log shippers), readable text on a TTY, unless `logFormat` forces one. */
export function createAppLogger(appName: string, config: Pick<BaseAppConfig, 'logLevel' | 'logFormat'>): ConsoleLogger {
  const json = config.logFormat === 'json' || (config.logFormat === 'auto' && !process.stdout.isTTY);
  const upTo = LEVELS.indexOf(config.logLevel as LogLevel);
  return new ConsoleLogger({ prefix: `p2p-${appName}`, json, logLevels: LEVELS.slice(0, upTo + 1), colors: !json });
}

const SECRET_PARAM = /^(token|access_token|refresh_token|password|passwd|secret|key|signature|sig|code|x-amz-.*|x-goog-.*)$/i;

/**
 * A URL safe for logs: query parameters that may carry credentials (registry tokens, signed
 * storage redirects) are replaced by REDACTED. Headers are never logged at all.
 */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = new URLSearchParams(url.slice(q + 1));
  for (const name of [...params.keys()]) if (SECRET_PARAM.test(name)) params.set(name, 'REDACTED');
  return `${url.slice(0, q)}?${params.toString()}`;
}
