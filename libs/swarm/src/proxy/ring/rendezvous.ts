import { createHash } from 'node:crypto';

/** Weight of `member` for `key`: the first 8 bytes of sha256(member NUL key). */
function rendezvousScore(member: string, key: string): bigint {
  return createHash('sha256').update(member).update('\0').update(key).digest().readBigUInt64BE(0);
}

/**
 * Members ordered by highest random weight for `key`: the same order on every host for the same
 * member set, and removing a member only moves the keys it owned.
 */
export function rendezvousOrder(members: readonly string[], key: string): string[] {
  return members
    .map((m) => ({ m, s: rendezvousScore(m, key) }))
    .sort((a, b) => (a.s === b.s ? (a.m < b.m ? -1 : 1) : a.s > b.s ? -1 : 1))
    .map((x) => x.m);
}
