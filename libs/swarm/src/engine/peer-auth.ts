import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** Length of the fresh nonce each side sends in its extended handshake. */
export const AUTH_NONCE_LENGTH = 16;
/** Length of a proof (HMAC-SHA256). */
const AUTH_PROOF_LENGTH = 32;
/** Name of our BEP 10 extension that carries the proof. */
export const AUTH_EXTENSION = 'p2p_auth';
const LABEL = Buffer.from('p2p-image-accelerator peer auth v1');

/** Which end of the TCP connection a side is: part of the MAC, so a proof cannot be reflected back. */
export type ConnectionSide = 'initiator' | 'acceptor';

export interface ProofInput {
  infoHash: Buffer;
  /** Peer id and nonce of the side that sends the proof. */
  senderId: Buffer;
  senderNonce: Buffer;
  senderSide: ConnectionSide;
  /** Peer id and nonce of the side that checks it. */
  receiverId: Buffer;
  receiverNonce: Buffer;
}

/**
 * Challenge–response proof that a peer knows the swarm token, bound to this torrent, both peer ids,
 * both fresh nonces and the sender's side of the connection: a proof seen on one connection is
 * worthless on any other (new nonces), for another torrent, or sent back to its author (side and
 * id order differ). The token itself never crosses the wire.
 */
export function authProof(token: string, p: ProofInput): Buffer {
  return createHmac('sha256', token)
    .update(LABEL)
    .update(p.infoHash)
    .update(p.senderSide === 'initiator' ? 'I' : 'A')
    .update(p.senderId)
    .update(p.receiverId)
    .update(p.senderNonce)
    .update(p.receiverNonce)
    .digest();
}

/** Constant-time check of a received proof. */
export function proofMatches(token: string, p: ProofInput, proof: Uint8Array): boolean {
  if (proof.length !== AUTH_PROOF_LENGTH) return false;
  return timingSafeEqual(authProof(token, p), proof);
}

export function newNonce(): Buffer {
  return randomBytes(AUTH_NONCE_LENGTH);
}
