import { Inject, Injectable, UnauthorizedException, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { SWARM_TOKEN } from '../tokens.js';
import { secretEquals } from './secrets.js';

/** Header cluster members put the swarm token in (Authorization carries the client's registry credentials). */
export const SWARM_TOKEN_HEADER = 'x-p2p-swarm-token';

/**
 * Guards the cluster-internal APIs (the proxy's torrent API): with a swarm token configured, only
 * callers presenting it pass (401 otherwise); without one the swarm is open, as documented.
 */
@Injectable()
export class SwarmTokenGuard implements CanActivate {
  constructor(@Inject(SWARM_TOKEN) private readonly token: string | undefined) {}

  canActivate(context: ExecutionContext): boolean {
    if (!this.token) return true;
    const req = context.switchToHttp().getRequest<{ headers: Record<string, string | string[] | undefined> }>();
    const given = req.headers[SWARM_TOKEN_HEADER];
    const value = Array.isArray(given) ? given[0] : given;
    if (!value || !secretEquals(this.token, value)) {
      throw new UnauthorizedException(`missing or wrong swarm token (${SWARM_TOKEN_HEADER} header)`);
    }
    return true;
  }
}
