/**
 * Requests that the server answers with a frame of their own (group changes, members,
 * receipts, presence). Their error frames carry neither `client_msg_id` nor `id`, so the
 * client keeps **one request in flight**: the next is written when the previous one was
 * answered, refused, timed out or lost with its connection. An error frame that names nothing
 * is the in-flight request's. Requests queued while disconnected wait for the next connection;
 * the one in flight when a connection ends is rejected with `connection_lost` (a group change
 * may have been applied: the application decides whether to ask again).
 */

import type { ServerFrame } from "./frames.js";
import { DistrisocksError } from "./errors.js";

export interface Request<T> {
  frame: string;
  /** The answer, when `f` is it. */
  match: (f: ServerFrame) => T | undefined;
}

interface Queued {
  req: Request<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: DistrisocksError) => void;
}

export class Requests {
  private readonly queue: Queued[] = [];
  private inFlight: { q: Queued; timer: ReturnType<typeof setTimeout> } | undefined;

  constructor(private readonly timeoutMs: number) {}

  add<T>(req: Request<T>): Promise<T> {
    return new Promise((resolve, reject) => {
      this.queue.push({ req, resolve: resolve as (v: unknown) => void, reject });
    });
  }

  /** Writes the next request when none is in flight; `write` returns false when not connected. */
  pump(write: (frame: string) => boolean): void {
    while (!this.inFlight && this.queue.length > 0) {
      const q = this.queue[0];
      if (!write(q.req.frame)) return;
      this.queue.shift();
      const timer = setTimeout(() => {
        this.settle((x) => x.reject(new DistrisocksError("timeout", `no answer within ${this.timeoutMs} ms`)));
        this.pump(write);
      }, this.timeoutMs);
      this.inFlight = { q, timer };
    }
  }

  /** Offers a server frame; true when it answered the request in flight. */
  offer(f: ServerFrame): boolean {
    if (!this.inFlight) return false;
    if (f.type === "error") {
      if (f.error.clientMsgId !== undefined || f.error.id !== undefined) return false;
      const e = f.error;
      this.settle((x) => x.reject(new DistrisocksError(e.code, e.message)));
      return true;
    }
    const v = this.inFlight.q.req.match(f);
    if (v === undefined) return false;
    this.settle((x) => x.resolve(v));
    return true;
  }

  disconnected(): void {
    this.settle((x) => x.reject(new DistrisocksError("connection_lost", "the connection ended before the answer")));
  }

  failAll(code: string, message: string): void {
    this.settle((x) => x.reject(new DistrisocksError(code, message)));
    for (const q of this.queue.splice(0)) q.reject(new DistrisocksError(code, message));
  }

  private settle(how: (q: Queued) => void): void {
    if (!this.inFlight) return;
    const { q, timer } = this.inFlight;
    clearTimeout(timer);
    this.inFlight = undefined;
    how(q);
  }
}
