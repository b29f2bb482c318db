/**
 * The chores of an open connection that run on timers: acks gathered into one `ids` frame,
 * the token refreshed before it expires, and the cursor saved without piling up writes.
 */

import type { TokenProvider } from "./connection.js";
import { Recent } from "./recent.js";

/** Most ids in one ack frame (PROTOCOL.md, "ack"). */
const MAX_IDS = 256;
/** Acks sent again after a reconnect: a v2 sync does not repeat what is at or below the
 * cursor, so an ack that died with its connection would leave its message below DELIVERED
 * for good. Acking a DELIVERED message is a no-op on the server. */
const REACK = 512;

export class Session {
  private acks = new Set<string>();
  private readonly sentAcks = new Recent<true>(REACK);
  private everOpened = false;
  private ackTimer: ReturnType<typeof setTimeout> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private saving = false;
  private saveAgain = false;
  private live = false;

  constructor(
    private readonly token: TokenProvider | undefined,
    private readonly refreshBeforeMs: number,
    private readonly write: (frame: string) => boolean,
  ) {}

  opened(token: string | null): void {
    this.live = true;
    if (this.everOpened) this.writeAcks([...this.sentAcks.entries()].map(([id]) => id));
    this.everOpened = true;
    const exp = token === null ? undefined : expiryOf(token);
    if (exp !== undefined) this.scheduleRefresh(exp);
  }

  ended(): void {
    this.live = false;
    clearTimeout(this.refreshTimer);
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    // Acks not yet written are kept for the next open, with those already sent: a v2 sync
    // does not bring back a message at or below the cursor, and the cursor has moved past
    // every message this device holds, so nothing else would ever ack it.
    for (const id of this.acks) this.sentAcks.set(id, true);
    this.acks.clear();
  }

  stop(): void {
    this.ended();
  }

  /** Queues an ack; the frame goes out `delayMs` after the first queued one, or when full. */
  ack(id: string, delayMs: number): void {
    if (!this.live) return;
    this.acks.add(id);
    if (this.acks.size >= MAX_IDS) return this.flushAcks();
    this.ackTimer ??= setTimeout(() => this.flushAcks(), delayMs);
  }

  private flushAcks(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    const ids = [...this.acks];
    this.acks.clear();
    for (const id of ids) this.sentAcks.set(id, true);
    this.writeAcks(ids);
  }

  private writeAcks(ids: string[]): void {
    for (let i = 0; i < ids.length; i += MAX_IDS) {
      this.write(JSON.stringify({ type: "ack", ids: ids.slice(i, i + MAX_IDS) }));
    }
  }

  /** `token_accepted`: the connection now lasts until `expiresAt` (seconds). */
  accepted(expiresAt: number): void {
    this.scheduleRefresh(expiresAt);
  }

  private scheduleRefresh(expSecs: number): void {
    if (!this.token) return;
    clearTimeout(this.refreshTimer);
    const delay = Math.max(0, expSecs * 1000 - Date.now() - this.refreshBeforeMs);
    this.refreshTimer = setTimeout(() => void this.refresh(), delay);
  }

  private async refresh(): Promise<void> {
    let token: string | null = null;
    try {
      token = this.token ? await this.token() : null;
    } catch {
      token = null;
    }
    // No fresh token: the connection ends at its expiry (4011) and the reconnect asks again.
    if (token !== null && this.live) this.write(JSON.stringify({ type: "auth", token }));
  }

  /** Runs `save` now, or once more after the save in progress: never two at a time. */
  saveCursor(save: () => Promise<void>): void {
    if (this.saving) {
      this.saveAgain = true;
      return;
    }
    this.saving = true;
    void save()
      .catch(() => undefined)
      .finally(() => {
        this.saving = false;
        if (this.saveAgain) {
          this.saveAgain = false;
          this.saveCursor(save);
        }
      });
  }
}

/** The `exp` (seconds) of a JWT, read without checking it: only to know when to refresh. */
export function expiryOf(token: string): number | undefined {
  const part = token.split(".")[1];
  if (!part) return undefined;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === "number" ? exp : undefined;
  } catch {
    return undefined;
  }
}
