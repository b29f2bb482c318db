/** An error the server answered (its `code` is one of PROTOCOL.md's error codes), or one of
 * the client's own: `outbox_full`, `closed` (the client was closed with the request pending),
 * `not_connected` (a request that is not kept across reconnects found no connection),
 * `connection_lost` (the connection ended before that request's answer). */
export class DistrisocksError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
    this.name = "DistrisocksError";
  }
}

/** Codes after which the same send may succeed later (PROTOCOL.md, "Error codes"). */
export const RETRYABLE = new Set(["overloaded", "store_unavailable", "rate_limited"]);
