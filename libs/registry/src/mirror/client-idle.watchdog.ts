import type { Socket } from 'node:net';

interface Watched {
  socket: Socket;
  /** Bytes the kernel had taken from the socket at the last check. */
  accepted: number;
  /** When the socket last took bytes, or last had nothing waiting for the client (ms). */
  movedAt: number;
  onIdle: () => void;
}

/** Bytes of `socket` handed to the kernel so far: written minus still queued in the process. */
function acceptedBytes(socket: Socket): number {
  return socket.bytesWritten - socket.writableLength;
}

/**
 * Cuts responses whose client takes nothing: a socket with bytes waiting for the client that has
 * accepted none of them for `timeoutMs` gets `onIdle` (which destroys it). A response waiting on its
 * source (nothing queued for the client) is never idle here; a slow but moving client never is.
 * One timer for all watched sockets, ticking a few times per timeout (at most once a second), only
 * while something is watched; it does not keep the process alive.
 */
export class ClientIdleWatchdog {
  private readonly watched = new Set<Watched>();
  private timer: NodeJS.Timeout | undefined;
  private readonly tickMs: number;

  /** `timeoutMs` 0 = never cut (watch() does nothing). */
  constructor(readonly timeoutMs: number) {
    this.tickMs = Math.max(10, Math.min(1000, Math.floor(timeoutMs / 4)));
  }

  /** Watches `socket` until the returned function is called (or the socket closes). */
  watch(socket: Socket | null | undefined, onIdle: () => void): () => void {
    if (this.timeoutMs <= 0 || !socket || socket.destroyed) return () => undefined;
    const entry: Watched = { socket, accepted: acceptedBytes(socket), movedAt: Date.now(), onIdle };
    this.watched.add(entry);
    const unwatch = () => {
      socket.off('close', unwatch);
      this.watched.delete(entry);
      if (this.watched.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
    socket.once('close', unwatch);
    if (!this.timer) {
      this.timer = setInterval(() => this.tick(), this.tickMs);
      this.timer.unref();
    }
    return unwatch;
  }

  /** Sockets being watched (for tests). */
  get size(): number {
    return this.watched.size;
  }

  private tick(): void {
    const now = Date.now();
    for (const entry of [...this.watched]) {
      const accepted = acceptedBytes(entry.socket);
      if (accepted !== entry.accepted || entry.socket.writableLength === 0) {
        entry.accepted = accepted;
        entry.movedAt = now;
      } else if (now - entry.movedAt >= this.timeoutMs) {
        this.watched.delete(entry);
        entry.onIdle();
      }
    }
  }
}
