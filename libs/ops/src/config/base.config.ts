import { IsIn, IsInt, IsString, Max, Min } from 'class-validator';
import { ConfigKey } from './config-key.decorator.js';
import { IsDuration } from './unit.validators.js';

/** `@IsUrl` options for the URL keys of every app: http(s) with an explicit scheme; cluster names (no TLD) allowed. */
export const HTTP_URL = { require_tld: false, require_protocol: true, protocols: ['http', 'https'] };

/**
 * Keys every app has. Unit-typed keys (rates, sizes, durations) accept strings with units in the
 * file and the environment; once loaded they hold plain numbers (bytes, bytes/s, seconds), which is
 * why they are typed `number` here.
 */
export class BaseAppConfig {
  @ConfigKey({ kind: 'number', doc: "HTTP port (health, metrics, admin API and the app's own API). 0 picks a free port." })
  @IsInt()
  @Min(0)
  @Max(65535)
  port = 0;

  @ConfigKey({ kind: 'string', doc: 'Address the HTTP server listens on.' })
  @IsString()
  host = '0.0.0.0';

  @ConfigKey({
    kind: 'string',
    doc: 'File holding the admin bearer token for /admin/*. Env P2P_ADMIN_TOKEN takes precedence. No token → admin API answers 403.',
    defaultText: '"" (admin API off)',
  })
  @IsString()
  adminTokenFile = '';

  @ConfigKey({
    kind: 'string',
    doc: 'File holding the shared swarm token that agents, proxies and trackers present to each other. Env P2P_SWARM_TOKEN takes precedence.',
    defaultText: '"" (no token: swarm open to anyone who can reach it)',
  })
  @IsString()
  swarmTokenFile = '';

  @ConfigKey({ kind: 'string', doc: 'Lowest log level written: error, warn, log, debug or verbose.' })
  @IsIn(['error', 'warn', 'log', 'debug', 'verbose'])
  logLevel = 'log';

  @ConfigKey({ kind: 'string', doc: 'auto = readable text on a TTY, JSON lines otherwise; or force json / text.' })
  @IsIn(['auto', 'json', 'text'])
  logFormat = 'auto';

  @ConfigKey({ kind: 'duration', doc: 'On SIGTERM, how long in-flight requests may run before the process exits anyway.' })
  @IsDuration()
  shutdownGraceSeconds = 25;
}
