/**
 * The client disconnected before its request was answered: the reason work done only for it is
 * aborted with. Not a fault of the agent, the origin or the data: one low-level log line and a
 * metric, never an error with a stack trace.
 */
export class ClientGoneError extends Error {
  constructor() {
    super('client disconnected');
    this.name = 'ClientGoneError';
  }
}
