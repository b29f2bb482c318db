/**
 * When to reconnect, from how the last connection ended (PROTOCOL.md "Close codes").
 *
 * The browser's WebSocket API hides the HTTP answer of a refused upgrade (401, 403, 429, 503
 * all look like close 1006), so an attempt that never opened is retried with backoff; the
 * client stops for good only on 4010 (user deleted), 4012 (the application's backend
 * disconnected the user), on `close()`, or when the token
 * provider says the user is signed out (returns `null` or throws).
 */

export interface BackoffOptions {
  /** First delay after a failure (ms). */
  initialMs: number;
  /** Longest delay (ms). */
  maxMs: number;
  /** Growth per consecutive failure. */
  factor: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 250, maxMs: 30_000, factor: 2 };

/** What a close code asks of the client. */
export type Reconnect = "now" | "backoff" | "never";

/** 1001 (the pod shuts down), 4009 (route lost) and 4011 (token expired: a fresh one is
 * fetched for the new connection) ask for a reconnect at once; 4010 (user deleted) and 4012
 * (disconnected by the application: a sign-out everywhere, a ban) for none;
 * everything else (4008 slow consumer, 4001 no pong, 4029 rate limit, 1011, 1006) after backoff,
 * so a client the pod just let go does not come straight back with the same load. */
export function reconnectFor(code: number): Reconnect {
  switch (code) {
    case 1001:
    case 4009:
    case 4011:
      return "now";
    case 4010:
    case 4012:
      return "never";
    default:
      return "backoff";
  }
}

/** Exponential backoff with full jitter: a delay drawn uniformly below the exponential bound,
 * so a whole pod's clients reconnecting at once spread out instead of arriving in waves. */
export class Backoff {
  private failures = 0;

  constructor(
    private readonly opts: BackoffOptions = DEFAULT_BACKOFF,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next attempt, and counts the failure. */
  next(): number {
    const bound = Math.min(this.opts.maxMs, this.opts.initialMs * this.opts.factor ** this.failures);
    this.failures = Math.min(this.failures + 1, 64);
    return Math.floor(this.random() * bound);
  }

  /** A connection opened: the next failure starts from the first delay again. */
  reset(): void {
    this.failures = 0;
  }
}
