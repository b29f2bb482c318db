/**
 * Sends that have no `accepted` yet. Every send carries a `client_msg_id`, the server's
 * idempotency key, so writing it again after a reconnect, a pod restart or a refusal that may
 * pass later (`overloaded`) stores it once: the repeat's `accepted` names the original id.
 * Kept in memory, in the order sent: a page reload loses what was never accepted.
 */

import type { Accepted } from "./frames.js";
import { DistrisocksError, RETRYABLE } from "./errors.js";

interface Pending {
  frame: string;
  resolve: (a: Accepted) => void;
  reject: (e: DistrisocksError) => void;
  /** Not before this time (ms) is it written again: set after a retryable refusal. */
  holdUntil: number;
  /** Written on the current connection and not answered yet. */
  inFlight: boolean;
}

export class Outbox {
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly capacity: number) {}

  /** Queues a send; the promise settles with its `accepted` or a final refusal. */
  add(clientMsgId: string, frame: string): Promise<Accepted> {
    if (this.pending.size >= this.capacity) {
      return Promise.reject(new DistrisocksError("outbox_full", `${this.capacity} sends wait for an answer`));
    }
    if (this.pending.has(clientMsgId)) {
      return Promise.reject(new DistrisocksError("invalid_client_msg_id", `${clientMsgId} is already pending`));
    }
    return new Promise((resolve, reject) => {
      this.pending.set(clientMsgId, { frame, resolve, reject, holdUntil: 0, inFlight: false });
    });
  }

  /** The frames to write now (in send order), marked in flight. */
  due(now: number): string[] {
    const out: string[] = [];
    for (const p of this.pending.values()) {
      if (!p.inFlight && p.holdUntil <= now) {
        p.inFlight = true;
        out.push(p.frame);
      }
    }
    return out;
  }

  /** The connection ended: nothing is in flight any more, everything is due again. */
  disconnected(): void {
    for (const p of this.pending.values()) p.inFlight = false;
  }

  /** Settles a send; false when no send of this id is pending (a late repeat). */
  accepted(a: Accepted): boolean {
    const p = a.clientMsgId === undefined ? undefined : this.pending.get(a.clientMsgId);
    if (!p) return false;
    this.pending.delete(a.clientMsgId!);
    p.resolve(a);
    return true;
  }

  /** A refusal of a pending send: a retryable one holds it for `retryMs`, any other rejects it.
   * Returns whether the send is still pending, or undefined when none had this id. */
  refused(clientMsgId: string, code: string, message: string, now: number, retryMs: number): boolean | undefined {
    const p = this.pending.get(clientMsgId);
    if (!p) return undefined;
    if (RETRYABLE.has(code)) {
      p.inFlight = false;
      p.holdUntil = now + retryMs;
      return true;
    }
    this.pending.delete(clientMsgId);
    p.reject(new DistrisocksError(code, message));
    return false;
  }

  /** The soonest time a held send becomes due, if any is held. */
  nextHold(): number | undefined {
    let at: number | undefined;
    for (const p of this.pending.values()) {
      if (!p.inFlight && p.holdUntil > 0) at = Math.min(at ?? Infinity, p.holdUntil);
    }
    return at;
  }

  /** Rejects every pending send (the client was closed for good). */
  failAll(code: string, message: string): void {
    for (const p of this.pending.values()) p.reject(new DistrisocksError(code, message));
    this.pending.clear();
  }

  get size(): number {
    return this.pending.size;
  }
}
