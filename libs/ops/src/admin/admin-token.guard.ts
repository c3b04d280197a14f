import { ForbiddenException, Inject, Injectable, UnauthorizedException, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { bearerToken, secretEquals } from './secrets.js';

export const ADMIN_TOKEN = Symbol('ADMIN_TOKEN');

/** Guards `/admin/*`: 403 when the admin API is off (no token configured), 401 on a missing or wrong token. */
@Injectable()
export class AdminTokenGuard implements CanActivate {
  constructor(@Inject(ADMIN_TOKEN) private readonly token: string | undefined) {}

  canActivate(context: ExecutionContext): boolean {
    if (!this.token) throw new ForbiddenException('admin API disabled: no admin token configured (adminTokenFile or P2P_ADMIN_TOKEN)');
    const req = context.switchToHttp().getRequest<{ headers: Record<string, string | string[] | undefined> }>();
    const given = bearerToken(req.headers.authorization);
    if (!given || !secretEquals(this.token, given)) {
      throw new UnauthorizedException('missing or wrong admin token: send Authorization: Bearer <token>');
    }
    return true;
  }
}
