/** A server the app runs itself under DATA_DIR (PostgreSQL, Redis) when no URL is configured. */
export interface LocalService {
  url: string;
  /** Stops the server if this process started it; one reused from another live process is left running. */
  stop(): Promise<void>;
}

/**
 * A local server could not start, for a reason the operator can act on: the
 * message is complete (what failed, the server's own words, what to set), so
 * it is printed without a stack trace.
 */
export class LocalServiceError extends Error {
  override readonly name = 'LocalServiceError';
}
