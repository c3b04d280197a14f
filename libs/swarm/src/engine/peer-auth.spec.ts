import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { authProof, newNonce, proofMatches, type ProofInput } from './peer-auth.js';

function input(): ProofInput {
  return {
    infoHash: randomBytes(20),
    senderId: randomBytes(20),
    senderNonce: newNonce(),
    senderSide: 'initiator',
    receiverId: randomBytes(20),
    receiverNonce: newNonce(),
  };
}

describe('peer auth proof', () => {
  it('matches for the same token and connection', () => {
    const p = input();
    expect(proofMatches('token', p, authProof('token', p))).toBe(true);
  });

  it('fails with a wrong token, another torrent, a replayed nonce, or reflected back', () => {
    const p = input();
    const proof = authProof('token', p);
    expect(proofMatches('other', p, proof)).toBe(false);
    expect(proofMatches('token', { ...p, infoHash: randomBytes(20) }, proof)).toBe(false);
    // A proof recorded on one connection is worthless on the next: the checker's nonce is fresh.
    expect(proofMatches('token', { ...p, receiverNonce: newNonce() }, proof)).toBe(false);
    // Sent back to its author (ids, nonces and side swapped) it does not verify either.
    const reflected: ProofInput = {
      infoHash: p.infoHash,
      senderId: p.receiverId,
      senderNonce: p.receiverNonce,
      senderSide: 'acceptor',
      receiverId: p.senderId,
      receiverNonce: p.senderNonce,
    };
    expect(proofMatches('token', reflected, proof)).toBe(false);
    // Even when an attacker echoes our own id and nonce, the side label differs.
    const echo: ProofInput = { ...p, receiverId: p.senderId, receiverNonce: p.senderNonce };
    expect(proofMatches('token', { ...echo, senderSide: 'acceptor' }, authProof('token', echo))).toBe(false);
    expect(proofMatches('token', p, proof.subarray(0, 31))).toBe(false);
  });
});
